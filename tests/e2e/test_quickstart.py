"""README command 1 on the real SmolLM2 base: pull -> serve -> train on Ray, evaluated on the serving
engine -> promote a 5% canary -> traffic with the openai client -> status -> rollback -> stop.
Training is cut to a few steps here to keep `make test` short; `make quickstart` trains the full
example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lorafleet.core.fsutil import sha256_file
from lorafleet.engine.process import free_port

PLATFORM = str(Path(sys.executable).with_name("platform"))
TRAIN_ROWS = sum(1 for line in (Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.jsonl")
                 .read_text(encoding="utf-8").splitlines() if line.strip())
FAST = ["--set", "max_steps=12", "--set", "eval.max_rows=8", "--set", "eval.max_new_tokens=48"]


def test_quickstart_loop_on_the_real_base(lorafleet_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"  # its own home: the quickstart owns the routes file and the server
    env = dict(os.environ, LORAFLEET_HOME=str(home))
    env.pop("LORAFLEET_DEFAULT_BASE", None)

    def platform(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([PLATFORM, *args], capture_output=True, text=True, env=env, timeout=timeout)

    try:
        result = platform("quickstart", *FAST, "--requests", "60", "--port", str(free_port()), timeout=1500)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-6000:]
        assert "failed requests: 0" in result.stdout, out[-3000:]
        assert "6/6 platform status" in result.stdout and "support-intents@1" in result.stdout
        # one engine start: training evaluated on the engine the server started
        assert "on the running engine http://127.0.0.1:" in result.stdout, out[-3000:]
        assert not (home / "logs" / "train-eval-engine.log").exists()
        assert (home / "quickstart-canary.png").stat().st_size > 1000

        folder = home / "bases" / "smollm2-135m-instruct"
        manifest = json.loads((folder / "base.json").read_text())
        assert manifest["architecture"] == "LlamaForCausalLM" and 130e6 < manifest["parameter_count"] < 140e6
        assert "Paris" in manifest["smoke_output"]
        for rel, entry in manifest["files"].items():
            assert sha256_file(folder / rel) == entry["sha256"], rel

        status = json.loads(platform("status", "--json").stdout)
        rows = {r["variant"]: r for r in status["routes"] if r["route"] == "support-intents"}
        assert rows["canary"]["version"] == "support-intents@1" and rows["canary"]["weight_percent"] == 5.0
        assert rows["stable"]["requests"] + rows["canary"]["requests"] >= 45  # 1 in 4 of the 60 is streamed
        assert rows["canary"]["requests"] >= 1

        rolled = platform("rollback", "support-intents", "--reason", "e2e")
        assert rolled.returncode == 0 and "-      version: support-intents@1" in rolled.stdout, rolled.stderr
        again = platform("rollback", "support-intents")
        assert again.returncode == 2 and "nothing to roll back" in again.stderr
        shown = json.loads(platform("registry", "show", "support-intents@1", "--json").stdout)
        assert shown["fingerprint"]["rows"] == TRAIN_ROWS and shown["training_metrics"]["global_step"] == 12
        again_pull = platform("base", "pull")
        assert again_pull.returncode == 0 and "already present" in again_pull.stdout
    finally:
        stopped = platform("stop", timeout=120)
    assert stopped.returncode == 0 and "stopped the server" in stopped.stdout, stopped.stdout + stopped.stderr
