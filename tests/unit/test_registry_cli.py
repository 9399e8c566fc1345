"""`platform registry ...` as a user runs it: name@N printed, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_BASE, make_lora_adapter

PLATFORM = str(Path(sys.executable).with_name("platform"))


@pytest.fixture()
def cli(settings, tiny_base, tmp_path):
    home = tmp_path / "home"  # its own home (own routes file), sharing the session's bases
    home.mkdir()
    (home / "bases").symlink_to(settings.layout.bases, target_is_directory=True)
    env = dict(os.environ, LORAFLEET_HOME=str(home), LORAFLEET_REGISTRY_URL=str(tmp_path / "reg"),
               LORAFLEET_DEFAULT_BASE=TINY_BASE)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PLATFORM, "registry", *args], capture_output=True, text=True, env=env, timeout=120,
                              cwd=tmp_path)

    return run


def test_push_show_alias_pull_verify(cli, settings, tmp_path) -> None:
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "a", r=4)
    r = cli("push", str(src), "--name", "demo")
    assert r.returncode == 0 and r.stdout.strip() == "demo@1", r.stderr
    assert cli("push", str(src), "--name", "demo").stdout.strip() == "demo@2"
    shown = json.loads(cli("show", "demo@1", "--json").stdout)
    assert shown["version"] == 1 and shown["base"]["name"] == TINY_BASE
    assert cli("alias", "demo", "champion", "1", "--reason", "best").returncode == 0
    assert json.loads(cli("show", "demo@champion", "--json").stdout)["version"] == 1
    assert "champion" in cli("list", "demo").stdout
    assert "verified" in cli("verify", "demo").stdout
    r = cli("pull", "demo@1", "--to", "out")
    assert r.returncode == 0 and (tmp_path / "out" / "adapter_config.json").is_file()
    assert cli("gc", "--dry-run").stdout.strip() == "nothing to remove"  # @1 is aliased, @2 the newest
    cli("push", str(src), "--name", "demo")
    assert cli("gc", "--dry-run").stdout.strip() == "would remove demo@2"
    assert "library_versions" in cli("show", "demo@2").stdout


def test_gc_spares_what_the_routes_file_names(cli, settings, tmp_path) -> None:
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "a", r=4)
    for _ in range(3):
        cli("push", str(src), "--name", "demo")
    routes = tmp_path / "home" / "routes.yaml"
    routes.write_text("routes:\n  demo:\n    stable: demo@1\n    canary: {version: demo@2, weight: 5}\n")
    assert cli("gc").stdout.strip() == "nothing to remove"
    routes.write_text("routes: [oops\n")
    r = cli("gc")
    assert r.returncode == 2 and "refusing to gc" in r.stderr
    routes.write_text("routes:\n  demo: {stable: demo@2}\n")
    assert cli("gc").stdout.strip() == "removed demo@1"
    r = cli("show", "demo@1")
    assert r.returncode == 2 and "removed by gc" in r.stderr
    assert cli("verify", "demo@2").returncode == 0


def test_a_flipped_byte_fails_verify_and_pull_naming_the_file(cli, settings, tmp_path) -> None:
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "a", r=4)
    assert cli("push", str(src), "--name", "demo").returncode == 0
    blob = json.loads(cli("show", "demo@1", "--json").stdout)["blob"]
    stored = tmp_path / "reg" / "adapters" / "demo" / "blobs" / blob / "adapter_model.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0x01
    stored.write_bytes(bytes(data))
    for args in (("verify", "demo@1"), ("pull", "demo@1", "--to", "out")):
        r = cli(*args)
        assert r.returncode == 2 and "adapter_model.safetensors" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (("push", "{empty}", "--name", "x"), "adapter_config.json"),
    (("push", "{adapter}", "--name", "../x"), "not a safe name"),
    (("push", "{adapter}", "--name", "x", "--base", "nope"), "base 'nope' not found"),
    (("show", "ghost@1"), "not found"),
    (("alias", "ghost", "stable", "1"), "not found"),
])
def test_bad_input_is_one_line_and_exit_2(cli, settings, tmp_path, args, needle) -> None:
    (tmp_path / "empty").mkdir()
    adapter = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "ad", r=4)
    args = [a.format(empty=tmp_path / "empty", adapter=adapter) for a in args]
    r = cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "reg" / "adapters").exists() or args[0] != "push"
