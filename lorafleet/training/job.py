"""Run one training config as a Ray Train job (``TorchTrainer``; its workers are Ray actors).

Checkpoints go to Ray storage under the platform home; ``FailureConfig`` retries restart the
worker group, which resumes from the last reported checkpoint. A continued run (``init_from``)
ships its parent adapter's verified files to the workers in the job's payload. The driver shows
a progress bar with the live loss, read from a small progress actor the rank-0 worker writes to.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import JobFailed

__all__ = ["RAY_NODE_ENV", "JobResult", "ensure_ray", "job_payload", "run_training_job"]

# The environment every Ray node of a training cluster starts with. Ray preloads the jemalloc it
# ships (ray/core/libjemalloc.so) into its own daemons and, with this, into its workers too. A
# training step's tensors change size with every flat batch; glibc's malloc fragments under that
# (the worker grew 11 MB a step and its steps from 1.5 to 2.7 s over 385 steps), jemalloc does not
# (flat 2.6 GB, 1.5 s a step): docs/guides/train.md, "Memory allocator".
RAY_NODE_ENV = {"RAY_LD_PRELOAD_ON_WORKERS": "1"}


@dataclass
class JobResult:
    """What a finished job hands to evaluation and the registry."""

    adapter_dir: Path
    metrics: dict[str, Any]
    run_name: str
    wall_seconds: float
    attempts: int = 1
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    timeline: list[tuple[int, int, float]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)  # per rank: node_id, node_ip, pid
    parent: str | None = None  # the init_from version it continued


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` or start an embedded Ray (no dashboard) unless one is already up."""
    import os

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")
    for key, value in RAY_NODE_ENV.items():  # read by the embedded Ray's raylet, which this starts
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    verbose = os.environ.get("LORAFLEET_TRAIN_VERBOSE", "") not in ("", "0")
    if address:
        ray.init(address=address, log_to_driver=verbose)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False, log_to_driver=verbose,
                 configure_logging=True, logging_level="WARNING")


def job_payload(cfg: TrainConfig, base_dir: Path) -> dict[str, Any]:
    """The plain dict each worker receives (paths as strings, no pydantic objects)."""
    data = cfg.model_dump(mode="json")
    data["base_dir"] = str(base_dir)
    return data


def run_training_job(cfg: TrainConfig, settings: Settings, base_dir: Path, *, run_name: str | None = None,
                     out_dir: Path | None = None, show_progress: bool = True,
                     pid_file: Path | None = None, on_progress: Callable[[dict], None] | None = None,
                     parent: Any = None) -> JobResult:
    """Train on the current Ray runtime (call :func:`ensure_ray` first) and copy the adapter to ``out_dir``.

    ``parent``: the :class:`~lorafleet.training.lineage.ParentAdapter` of ``init_from`` if the caller
    resolved it already (else it is resolved here against the config's base).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lorafleet.training.progress import make_progress_actor
    from lorafleet.training.worker import FINAL_MARKER, train_loop

    run_name = run_name or f"{cfg.output_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    storage = settings.layout.ray
    storage.mkdir(parents=True, exist_ok=True)
    actor = make_progress_actor()
    payload = job_payload(cfg, base_dir)
    payload["progress_actor"] = actor
    payload["pid_file"] = str(pid_file) if pid_file else None
    if cfg.init_from is not None:
        if parent is None:
            from lorafleet.registry.bases import BaseStore
            from lorafleet.training.lineage import resolve_parent

            parent = resolve_parent(cfg, settings, BaseStore(settings.layout.bases).require(cfg.base))
        payload["init_adapter_files"] = parent.files
    resources = {"CPU": cfg.cpus_per_worker}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except Exception as err:  # noqa: BLE001 - reported below
            outcome["error"] = err

    t0 = time.perf_counter()
    thread = threading.Thread(target=fit, name=f"fit-{run_name}", daemon=True)
    thread.start()
    _watch(thread, actor, cfg.output_name, show_progress, on_progress)
    wall = time.perf_counter() - t0
    state = _get(actor) or {}
    if "error" in outcome:
        raise JobFailed(f"training job {run_name} failed: {outcome['error']}".replace("\n", " ")[:2000])
    result = outcome["result"]
    if result.error is not None:
        raise JobFailed(f"training job {run_name} failed: {result.error}".replace("\n", " ")[:2000])
    ckpt = result.checkpoint
    if ckpt is None:
        raise JobFailed(f"training job {run_name} reported no checkpoint")
    dest = out_dir or (settings.layout.cache / "train" / run_name / "adapter")
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ckpt.to_directory(str(dest))
    marker = dest / FINAL_MARKER
    if not marker.is_file():
        raise JobFailed(f"training job {run_name}: last checkpoint is not a finished adapter")
    import json

    metrics = json.loads(marker.read_text())
    marker.unlink()
    return JobResult(dest, metrics, run_name, wall, attempts=max(1, state.get("attempts", 1)),
                     loss_history=state.get("history", []), worker_pids=state.get("pids", []),
                     resumed_from=state.get("resumed_from", []), timeline=state.get("timeline", []),
                     workers=state.get("workers", []), parent=parent.ref if parent is not None else None)


def _get(actor: Any) -> dict | None:
    import ray

    try:
        return ray.get(actor.get.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - progress is best effort
        return None


def _watch(thread: threading.Thread, actor: Any, label: str, show: bool, on_progress) -> None:
    """Poll the progress actor while the job runs; draw a rich progress bar with the live loss."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("try {task.fields[attempt]}"), TimeElapsedColumn())
    with Progress(*columns, disable=not show, transient=False) as bar:
        task = bar.add_task(label, total=None, loss="-", attempt=1)
        # a log file or pipe gets no live bar: print a plain line every 10 steps instead
        plain = show and not bar.console.is_terminal
        last_line = 0
        while thread.is_alive():
            thread.join(timeout=1.0)
            state = _get(actor)
            if not state:
                continue
            if on_progress is not None:
                on_progress(state)
            loss = f"{state['loss']:.4f}" if state["loss"] is not None else "-"
            bar.update(task, completed=state["step"], total=state["total"] or None, loss=loss,
                       attempt=max(1, state["attempts"]))
            if plain and state["step"] >= last_line + 10:
                last_line = state["step"]
                elapsed = bar.tasks[0].elapsed or 0.0
                print(f"{label}: step {state['step']}/{state['total'] or '?'} loss {loss} "
                      f"try {max(1, state['attempts'])} {elapsed:.0f}s", flush=True)
