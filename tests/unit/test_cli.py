"""The `platform` CLI: fast help, lazy heavy imports, one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PLATFORM = str(Path(sys.executable).with_name("platform"))


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LORAFLEET_HOME=str(home))
    return subprocess.run([PLATFORM, *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_answers_in_under_a_second(tmp_path: Path) -> None:
    run_cli("--help", home=tmp_path)  # warm the OS file cache once
    start = time.perf_counter()
    result = run_cli("--help", home=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "base" in result.stdout
    assert elapsed < 1.0, f"platform --help took {elapsed:.2f}s"


def test_cli_import_keeps_heavy_modules_lazy() -> None:
    code = (
        "import sys, lorafleet.platform.cli;"
        "heavy = [m for m in ('torch', 'vllm', 'ray', 'trl', 'transformers', 'peft') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at CLI start: {out.stdout.strip()}"


def test_pull_from_a_folder_that_is_not_a_model_fails_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "not-a-model"
    src.mkdir()
    (src / "README.md").write_text("hello")
    result = run_cli("base", "pull", "x", "--from", str(src), home=home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.json" in lines[0], result.stderr
    assert not (home / "bases" / "x").exists()


def test_pull_from_a_non_causal_lm_folder_fails_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "encoder"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["BertModel"]}')
    result = run_cli("base", "pull", "enc", "--from", str(src), home=home)
    assert result.returncode == 2
    assert "not a causal LM" in result.stderr and "BertModel" in result.stderr
    assert not (home / "bases").exists() or not any((home / "bases").iterdir())


def test_unsafe_base_names_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for bad in ("../x", "has space", "UPPER", ""):
        result = run_cli("base", "pull", bad, "--from", str(tmp_path), home=home)
        assert result.returncode == 2, (bad, result.stderr)
        assert "not a safe name" in result.stderr, (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (home / "bases").exists()


def test_unknown_builtin_base_is_refused(tmp_path: Path) -> None:
    result = run_cli("base", "pull", "no-such-base", home=tmp_path)
    assert result.returncode == 2
    assert "not a built-in base" in result.stderr and "smollm2-135m-instruct" in result.stderr


def test_an_open_gateway_refuses_to_leave_loopback(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", home=tmp_path)
    assert result.returncode == 2
    assert "--host='0.0.0.0'" in result.stderr and "platform keys add" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_busy_port_is_refused_up_front(tmp_path: Path) -> None:
    """`platform serve --detach` and the quickstart (whose server starts in the background while Ray trains)
    refuse a busy port at once, in one line, not minutes later from a dead server process."""
    import socket

    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        results = {cmd: run_cli(cmd, *extra, "--port", str(port), home=home)
                   for cmd, extra in (("quickstart", ()), ("serve", ("--detach",)))}
    for cmd, result in results.items():
        assert result.returncode == 2, (cmd, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--port" in lines[0] and f"127.0.0.1:{port} is in use" in lines[0], result.stderr
    assert "1/6 base pull" not in results["quickstart"].stdout and not (home / "bases").exists()
    assert not (home / "run").exists() or not any((home / "run").iterdir())  # no pid file left behind
