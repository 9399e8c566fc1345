"""`platform train` end to end on the tiny base: data checks, a real Ray Train job, evaluation
on a real vLLM engine, the gate, a push to the registry; and a Ray worker killed mid-training."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from lorafleet.training.config import load_train_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"
FAST = ["base=tiny-llama", "cpus_per_worker=1", "batch_size=4", "logging_steps=1", "bf16_autocast=false",
        "eval.max_rows=6", "eval.max_new_tokens=8", "eval.suites.regression.max_new_tokens=8",
        "eval.engine_start_timeout_s=240"]
SUITES = {"hard": "structured", "regression": "reference", "safety": "safety"}


@pytest.fixture(scope="module")
def ray_runtime():
    from lorafleet.training.job import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    import ray

    ray.shutdown()


def test_platform_train_evaluates_gates_and_force_pushes(settings, tiny_base, ray_runtime):
    from typer.testing import CliRunner

    from lorafleet.platform.cli import app
    from lorafleet.registry import open_registry

    drop = 0.15  # the example reports regression without gating it; gate it here to see the vs-base check
    sets = [*FAST, "output_name=tiny-intents", "max_steps=4", "checkpoint_every_steps=2", "gate.min_schema_pass_rate=0.99",
            f"gate.suites.regression.max_drop_vs_base={drop}"]
    args = ["train", str(EXAMPLE), *[x for kv in sets for x in ("--set", kv)], "--force"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    out = res.output
    # data checks first, then the base-vs-adapter table; the random tiny model fails the gate: --force pushes
    assert out.index("data check") < out.index("tiny-intents: base vs adapter")
    assert "gate failed:" in out and "eval.schema_pass_rate=" in out and "(pushing anyway: --force)" in out
    assert "pushed tiny-intents@1" in out
    manifest = open_registry(settings).verify("tiny-intents@1")
    assert manifest.gate["passed"] is False and manifest.gate["forced"] is True
    assert manifest.training_metrics["global_step"] == 4 and manifest.training_metrics["attempts"] == 1
    assert manifest.training_metrics["malloc"] == "jemalloc"  # Ray's own, preloaded into the embedded Ray's worker
    assert manifest.training_metrics["eval_loss"] > 0 and "base_eval_loss" in manifest.training_metrics
    assert set(manifest.dataset_sha256) == {"train", "eval", "golden"}
    train_rows = sum(1 for line in (EXAMPLE.parent / "train.jsonl").open() if line.strip())
    assert manifest.fingerprint.rows == train_rows == sum(manifest.fingerprint.features["prompt_tokens"].counts)
    assert manifest.prompt_template_sha256 == tiny_base.identity.chat_template_sha256
    assert manifest.peft.r == 16 and manifest.method == "sft" and manifest.library_versions["peft"]
    for who in ("base", "adapter"):
        scores = manifest.eval_metrics[who]["eval"]
        assert scores["rows"] == 6 and 0 <= scores["json_parse_rate"] <= 1 and "intent" in scores["field_match"]
        for name, kind in SUITES.items():  # every suite of the example, scored on the same engine start
            s = manifest.eval_metrics[who][name]
            assert s["scoring"] == kind and s["rows"] == 6 and 0 <= s["pass_rate"] <= 1 and len(s["sha256"]) == 64
    assert manifest.eval_metrics["sets"] == ["eval", "golden", "hard", "regression", "safety"]
    assert "leak_rate" in manifest.eval_metrics["adapter"]["safety"]
    assert "keyword_rate" in manifest.eval_metrics["adapter"]["regression"]
    checks = {c["name"]: c for c in manifest.gate["checks"]}
    assert {"hard.field_match.intent", "regression.pass_rate_vs_base", "safety.leak_rate"} <= set(checks)
    assert checks["regression.pass_rate_vs_base"]["threshold"] == pytest.approx(
        manifest.eval_metrics["base"]["regression"]["pass_rate"] - drop)
    for row in ("hard.match.intent", "regression.pass_rate", "safety.leak_rate"):  # the table has every suite
        assert row in out
    shown = CliRunner().invoke(app, ["registry", "show", "tiny-intents@1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for name, kind in SUITES.items():
        assert f"{name:<12} {kind:<10}     6 rows" in shown.output
    assert "safety.leak_rate" in shown.output and "gate      FAILED (pushed with --force): " in shown.output


def test_killed_worker_resumes_from_checkpoint(settings, tiny_base, ray_runtime, tmp_path):
    from lorafleet.registry import open_registry
    from lorafleet.registry.bases import BaseStore
    from lorafleet.training.job import run_training_job

    cfg = load_train_config(EXAMPLE, [*FAST, "output_name=tiny-fault", "max_steps=24", "checkpoint_every_steps=4",
                                      "max_failures=2", "data.eval=null"])
    pid_file = tmp_path / "worker.pid"
    killed: list[int] = []
    lock = threading.Lock()

    def kill_after_first_checkpoint(state: dict) -> None:
        with lock:
            if not killed and state["checkpoints"] >= 2 and state["attempts"] == 1 and pid_file.is_file():
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    job = run_training_job(cfg, settings, settings.layout.base("tiny-llama"), show_progress=False,
                           pid_file=pid_file, on_progress=kill_after_first_checkpoint)
    assert killed, "the worker was never killed"
    assert job.attempts == 2 and killed[0] == job.worker_pids[0] != job.worker_pids[1]
    # the second attempt resumed from a checkpoint, not from scratch (the kill races the newest
    # checkpoint's hand-off to Ray, so that may be the one before it: step 4 or 8)
    assert job.resumed_from[0] == 0 and job.resumed_from[1] >= 4
    assert job.metrics["global_step"] == 24
    base = BaseStore(settings.layout.bases).require("tiny-llama")
    reg = open_registry(settings)
    m = reg.push(job.adapter_dir, "tiny-fault", base, lineage={"training_metrics": job.metrics})
    assert reg.verify(m.ref).ref == "tiny-fault@1"
