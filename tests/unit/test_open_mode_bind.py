"""Open mode (no keys file) binds loopback only, at every entry point (issue 14, defect 5b):
`platform serve` (foreground and --detach), ``python -m lorafleet.serving.server`` and the
control plane's ``python -m lorafleet.platform.control.serve_main`` all refuse a non-loopback
--host with one line on stderr and exit code 2, before anything is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorafleet.core.errors import InputError
from lorafleet.core.settings import Settings
from lorafleet.serving.server import check_bind, is_loopback

PLATFORM = str(Path(sys.executable).parent / "platform")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "192.168.1.5", "example.com", "localhost.evil"])
def test_other_addresses_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_check_bind_needs_a_keys_file_beyond_loopback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    check_bind(settings, "127.0.0.1")  # open mode on loopback is fine
    with pytest.raises(InputError) as info:
        check_bind(settings, "0.0.0.0")
    assert info.value.field == "--host" and info.value.value == "0.0.0.0"
    settings.keys_path.parent.mkdir(parents=True, exist_ok=True)
    settings.keys_path.write_text("tenants: {}\n")
    check_bind(settings, "0.0.0.0")  # with keys every caller is checked: any address


def test_every_entry_point_refuses_an_open_public_bind(tmp_path: Path) -> None:
    env = {**os.environ, "LORAFLEET_HOME": str(tmp_path / "home")}
    commands = {
        "platform serve": [PLATFORM, "serve", "--host", "0.0.0.0", "--base", "tiny-llama"],
        "platform serve --detach": [PLATFORM, "serve", "--detach", "--host", "0.0.0.0", "--base", "tiny-llama"],
        "platform serve --canary-analysis": [PLATFORM, "serve", "--canary-analysis", "--host", "0.0.0.0",
                                             "--base", "tiny-llama"],
        "serving.server": [sys.executable, "-m", "lorafleet.serving.server", "--host", "0.0.0.0",
                           "--base", "tiny-llama"],
        "control.serve_main": [sys.executable, "-m", "lorafleet.platform.control.serve_main", "--host", "::",
                               "--base", "tiny-llama"],
    }
    procs = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, cmd in commands.items()}  # together: each is mostly Python's start-up
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, proc.returncode, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("error: --host=") and "loopback" in lines[0], (name, lines[0])
        assert "0.0.0.0" in lines[0] or "'::'" in lines[0], (name, lines[0])
    assert not (tmp_path / "home" / "run" / "serve.json").exists()  # nothing was started
