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
        "eval.max_rows=6", "eval.max_new_tokens=8", "eval.engine_start_timeout_s=240"]


@pytest.fixture(scope="module")
def ray_runtime():
    from lorafleet.training.job import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    import ray

    ray.shutdown()


def test_train_evaluate_gate_force_push(settings, tiny_base, ray_runtime):
    from lorafleet.registry import open_registry
    from lorafleet.training.pipeline import comparison_rows, run_pipeline

    cfg = load_train_config(EXAMPLE, [*FAST, "output_name=tiny-intents", "max_steps=4", "checkpoint_every_steps=2",
                                      "gate.min_schema_pass_rate=0.99"])
    messages: list[str] = []
    result = run_pipeline(cfg, settings, force=True, show_progress=False, say=messages.append)
    # the random tiny model cannot pass the gate: --force pushes and records the failure
    assert result.ref == "tiny-intents@1"
    assert any(m.startswith("gate failed:") and "eval.schema_pass_rate=" in m for m in messages), messages
    manifest = open_registry(settings).verify(result.ref)
    assert manifest.gate["passed"] is False and manifest.gate["forced"] is True
    assert manifest.training_metrics["global_step"] == 4 and manifest.training_metrics["attempts"] == 1
    assert manifest.training_metrics["eval_loss"] > 0 and "base_eval_loss" in manifest.training_metrics
    assert set(manifest.dataset_sha256) == {"train", "eval", "golden"}
    assert manifest.fingerprint.rows == 640 and manifest.fingerprint.features["prompt_tokens"].counts
    assert manifest.prompt_template_sha256 == tiny_base.identity.chat_template_sha256
    assert manifest.peft.r == 16 and manifest.method == "sft"
    for who in ("base", "adapter"):
        scores = manifest.eval_metrics[who]["eval"]
        assert scores["rows"] == 6 and 0 <= scores["json_parse_rate"] <= 1 and "intent" in scores["field_match"]
    assert [r[0] for r in comparison_rows(result.evaluation, result.train_metrics)][0] == "eval.loss"


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
    assert job.resumed_from[0] == 0 and job.resumed_from[1] >= 8  # second attempt resumed mid-run
    assert job.metrics["global_step"] == 24
    base = BaseStore(settings.layout.bases).require("tiny-llama")
    reg = open_registry(settings)
    m = reg.push(job.adapter_dir, "tiny-fault", base, lineage={"training_metrics": job.metrics})
    assert reg.verify(m.ref).ref == "tiny-fault@1"
