"""MLflow tracking of `platform train` against a real `mlflow server` (SQLite store) on the tiny
base: params, the loss per step, eval metrics per suite, dataset hashes and the pushed name@N; a
sweep's jobs are nested runs under one parent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.mlflow_harness import mlflow_server
from tests.integration.test_train import EXAMPLE, FAST, ray_runtime  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def _runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorafleet")
    assert exp is not None, "no lorafleet experiment on the server"
    return client.search_runs([exp.experiment_id])


def test_train_run_is_tracked(settings, tiny_base, ray_runtime, tracking_uri, engine):  # noqa: F811
    """One CLI run with `tracking.mlflow_uri` in the config: evaluated on the session's running engine
    (`eval.engine_url`: no engine of its own), pushed with --force."""
    import httpx
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from lorafleet.platform.cli import app

    sets = [*FAST, "output_name=tiny-tracked", "max_steps=3", "eval.max_rows=2", "eval.max_new_tokens=4",
            f"tracking.mlflow_uri={tracking_uri}", f"eval.engine_url={engine.root_url}/v1"]
    res = CliRunner().invoke(app, ["train", str(EXAMPLE), *[x for kv in sets for x in ("--set", kv)], "--force"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    assert f"on the running engine {engine.root_url}" in res.output and "starting vLLM engine" not in res.output
    served = [m["id"] for m in httpx.get(f"{engine.root_url}/v1/models", timeout=10).json()["data"]]
    assert not [m for m in served if m.startswith("candidate")], served  # the candidate gave its slot back
    run = next(r for r in _runs(tracking_uri) if r.data.tags.get("lorafleet.output_name") == "tiny-tracked")
    d = run.data
    assert run.info.status == "FINISHED"
    assert d.tags["lorafleet.ref"] == "tiny-tracked@1"
    # the whole config, flattened
    assert d.params["output_name"] == "tiny-tracked" and d.params["max_steps"] == "3"
    assert d.params["peft.r"] == "16" and d.params["tracking.mlflow_uri"] == tracking_uri
    assert d.params["data.train"].endswith("train.jsonl")
    # per-step loss: one point per logged step (logging_steps=1)
    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3] and all(m.value > 0 for m in history)
    # evaluation report per model and suite, and training metrics
    for who in ("base", "adapter"):
        for split in ("eval", "golden"):
            assert 0.0 <= d.metrics[f"eval.{who}.{split}.json_parse_rate"] <= 1.0
            assert d.metrics[f"eval.{who}.{split}.rows"] == 2.0
    assert d.metrics["train.global_step"] == 3.0 and d.metrics["train.eval_loss"] > 0
    # data hashes, as in the pushed manifest
    from lorafleet.registry import open_registry

    manifest = open_registry(settings).verify("tiny-tracked@1")
    for split, digest in manifest.dataset_sha256.items():
        assert d.tags[f"lorafleet.dataset_sha256.{split}"] == digest
    assert d.tags["lorafleet.gate.forced"] in ("true", "false")


def test_an_engine_url_that_cannot_evaluate_is_named(settings, tiny_base, engine):
    """eval.engine_url: nothing listening, or an engine serving another base, is a TrainingError naming it."""
    from types import SimpleNamespace

    from lorafleet.engine.process import free_port
    from lorafleet.training.config import load_train_config
    from lorafleet.training.errors import TrainingError
    from lorafleet.training.evaluate import run_evaluation

    for url, base, needle in [(f"http://127.0.0.1:{free_port()}", "tiny-llama", "no vLLM engine answers /v1/models"),
                              (engine.root_url, "smollm2-135m-instruct", "not the config's base 'smollm2-135m-instruct'")]:
        cfg = load_train_config(EXAMPLE, [*FAST, f"eval.engine_url={url}"])
        with pytest.raises(TrainingError, match=re.escape(f"eval.engine_url={url!r}")) as info:
            run_evaluation(cfg, settings, SimpleNamespace(name=base), Path("unused"), Path("unused"), say=lambda _m: None)
        assert needle in str(info.value)

    # the CLI checks it before any compute: one line, exit code 2, no Ray job started
    url = f"http://127.0.0.1:{free_port()}"
    sets = [*FAST, "output_name=tiny-no-engine", "max_steps=2", f"eval.engine_url={url}"]
    done = subprocess.run([str(Path(sys.executable).with_name("platform")), "train", str(EXAMPLE),
                           *[x for kv in sets for x in ("--set", kv)]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: eval.engine_url={url!r}: no vLLM engine answers"), lines
    assert "training tiny-no-engine" not in done.stdout, done.stdout


def test_sweep_runs_nest_under_one_parent(settings, tiny_base, ray_runtime, tracking_uri, monkeypatch):  # noqa: F811
    """`--sweep` through the library with MLFLOW_TRACKING_URI set (no evaluation: the cheap path)."""
    from lorafleet.training.pipeline import run_pipeline
    from lorafleet.training.sweep import plan_jobs, run_jobs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    jobs = plan_jobs([EXAMPLE], [*FAST, "output_name=tiny-sweep", "max_steps=2", "data.eval=null"], "seed=1,2")
    results = run_jobs(jobs, settings, run_pipeline, force=True, push=True, evaluate=False, show_progress=False,
                       say=lambda m: None)
    assert not [r for r in results if isinstance(r, Exception)], results
    runs = _runs(tracking_uri)
    parent = next(r for r in runs if r.data.tags.get("lorafleet.sweep") == "true")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    assert sorted(r.data.tags["lorafleet.ref"] for r in children) == ["tiny-sweep-1@1", "tiny-sweep-2@1"]
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.metrics["loss"] > 0 for r in children)
