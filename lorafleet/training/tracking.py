"""Optional MLflow tracking of training runs, logged from the driver.

One MLflow run per training job: the whole config flattened into params, the loss per step
(read from the Ray Train job's progress actor while it runs), the training metrics, the
evaluation report flattened per model and suite (``eval.adapter.golden.pass_rate``), the gate,
the dataset hashes, and the pushed ``name@N`` as the tag ``lorafleet.ref``. The jobs of one
sweep are nested runs under one parent run (tag ``mlflow.parentRunId``).

Tracking is on when ``tracking.mlflow_uri`` is set in the training config or the
``MLFLOW_TRACKING_URI`` environment variable is; otherwise nothing here imports mlflow.
The explicit ``MlflowClient`` API is used (no fluent active-run state), so concurrent sweep
jobs in threads each log to their own run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from lorafleet.training.config import TrackingSettings, TrainConfig
from lorafleet.training.errors import TrainConfigError

__all__ = ["ENV_VAR", "REF_TAG", "resolve_tracking_uri", "flatten", "numeric_items", "RunTracker",
           "start_sweep_parent"]

ENV_VAR = "MLFLOW_TRACKING_URI"
REF_TAG = "lorafleet.ref"
PARENT_TAG = "mlflow.parentRunId"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value
_BATCH = 100  # MLflow takes at most 100 params or tags per batch


def resolve_tracking_uri(tracking: TrackingSettings) -> tuple[str, str] | None:
    """(uri, where it came from) or None when tracking is off: the config's field wins over the env var."""
    if tracking.mlflow_uri:
        return tracking.mlflow_uri, "tracking.mlflow_uri"
    env = os.environ.get(ENV_VAR, "").strip()
    return (env, ENV_VAR) if env else None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists stay leaves."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def numeric_items(data: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numeric leaves of ``data`` (booleans as 0/1) under ``prefix``: what MLflow takes as metrics."""
    out = {}
    for key, value in flatten(data, prefix).items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)) and value == value:  # NaN is not a score
            out[key] = float(value)
    return out


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_CHARS]


def _client(uri: str, source: str) -> Any:
    """An MlflowClient on ``uri``; an http(s) server is asked /health first so a wrong URI fails at once."""
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            r = httpx.get(uri.rstrip("/") + "/health", timeout=10)
            r.raise_for_status()
        except httpx.HTTPError as err:
            raise TrainConfigError(f"{source}={uri!r}: no MLflow server answers there ({err})") from None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrainConfigError(f"{source}={uri!r}: tracking needs the mlflow package (pip install mlflow)") from None
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - created meanwhile by a concurrent sweep job
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class RunTracker:
    """One MLflow run; used as a context manager, it ends FINISHED, or FAILED on an exception."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._lock = threading.Lock()
        self._last_loss_step = -1

    @classmethod
    def start(cls, cfg: TrainConfig, *, parent_run_id: str | None = None,
              run_name: str | None = None) -> RunTracker | None:
        """A new run for ``cfg`` with its params logged; None when tracking is off."""
        found = resolve_tracking_uri(cfg.tracking)
        if found is None:
            return None
        client = _client(*found)
        tags = {"lorafleet.output_name": cfg.output_name, "lorafleet.base": cfg.base, "lorafleet.method": cfg.method}
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        run = client.create_run(_experiment_id(client, cfg.tracking.experiment), tags=tags,
                                run_name=run_name or cfg.output_name)
        tracker = cls(client, run.info.run_id)
        tracker.log_params({k: _param_value(v) for k, v in flatten(cfg.model_dump(mode="json")).items()})
        return tracker

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("FAILED" if exc_type is not None else "FINISHED")

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _BATCH])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _param_value(v)) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + _BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_loss(self, history: list[tuple[int, float]] | list[list[Any]]) -> None:
        """Log the (step, loss) entries not logged yet as the metric ``loss``."""
        from mlflow.entities import Metric

        with self._lock:
            new = [(int(s), float(v)) for s, v in history if int(s) > self._last_loss_step]
            if not new:
                return
            self._last_loss_step = max(s for s, _ in new)
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric("loss", v, now, s) for s, v in new])

    def on_progress(self, state: dict[str, Any]) -> None:
        """The job's progress callback (the driver polls the progress actor about once a second)."""
        self.log_loss(state.get("history") or [])

    def log_training(self, train_metrics: dict[str, Any], loss_history: list[tuple[int, float]]) -> None:
        self.log_loss(loss_history)
        self.log_metrics(numeric_items(train_metrics, "train"))

    def log_evaluation(self, evaluation: dict[str, Any], gate: dict[str, Any]) -> None:
        """The evaluation report's numbers (``eval.<model>.<suite>.<score>``) and the gate's outcome."""
        self.log_metrics(numeric_items({k: v for k, v in evaluation.items() if isinstance(v, dict)}, "eval"))
        self.set_tags({"lorafleet.gate.passed": gate.get("passed"), "lorafleet.gate.forced": gate.get("forced")})
        for check in gate.get("checks", []):
            if isinstance(check.get("value"), (int, float)):
                self.log_metrics({f"gate.{check['name']}": float(check["value"])})

    def log_lineage(self, lineage: dict[str, Any]) -> None:
        """Dataset hashes and the fingerprint's summary as tags (``lorafleet.dataset_sha256.train`` ...)."""
        tags = {f"lorafleet.dataset_sha256.{k}": v for k, v in (lineage.get("dataset_sha256") or {}).items()}
        fp = lineage.get("fingerprint") or {}
        if isinstance(fp, dict) and "rows" in fp:
            tags["lorafleet.fingerprint.rows"] = fp["rows"]
        tags["lorafleet.ray_run"] = lineage.get("ray_run")
        if lineage.get("parent"):
            tags["lorafleet.parent"] = lineage["parent"]
        self.set_tags({k: v for k, v in tags.items() if v is not None})

    def set_ref(self, ref: str) -> None:
        self.set_tags({REF_TAG: ref})

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def start_sweep_parent(jobs: list[TrainConfig]) -> RunTracker | None:
    """The parent run of several jobs started together (a sweep); None for one job or tracking off."""
    if len(jobs) < 2:
        return None
    first = jobs[0]
    found = resolve_tracking_uri(first.tracking)
    if found is None:
        return None
    client = _client(*found)
    run = client.create_run(_experiment_id(client, first.tracking.experiment),
                            tags={"lorafleet.sweep": "true", "lorafleet.jobs": ",".join(j.output_name for j in jobs)},
                            run_name=f"sweep-{first.output_name}")
    return RunTracker(client, run.info.run_id)
