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
    env = dict(os.environ, LORAFLEET_HOME=str(settings.home), LORAFLEET_REGISTRY_URL=str(tmp_path / "reg"),
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
