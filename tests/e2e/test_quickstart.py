"""The README's first command on the real SmolLM2 base: pull it, serve it, ask it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lorafleet.core.fsutil import sha256_file

PLATFORM = str(Path(sys.executable).with_name("platform"))


def test_quickstart_answers_with_the_real_base(lorafleet_home: Path) -> None:
    env = dict(os.environ, LORAFLEET_HOME=str(lorafleet_home))
    result = subprocess.run([PLATFORM, "quickstart"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Paris" in result.stdout, result.stdout

    folder = lorafleet_home / "bases" / "smollm2-135m-instruct"
    manifest = json.loads((folder / "base.json").read_text())
    assert manifest["architecture"] == "LlamaForCausalLM"
    assert 130e6 < manifest["parameter_count"] < 140e6
    assert "Paris" in manifest["smoke_output"]
    for rel, entry in manifest["files"].items():
        assert sha256_file(folder / rel) == entry["sha256"], rel

    again = subprocess.run([PLATFORM, "base", "pull"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "already present" in again.stdout, again.stdout + again.stderr
