"""check -> train -> evaluate -> gate -> push: what `platform train` runs for one config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import GateFailed
from lorafleet.training.report import comparison_rows

__all__ = ["PipelineResult", "run_pipeline", "push_adapter", "comparison_rows"]


@dataclass
class PipelineResult:
    config: TrainConfig
    adapter_dir: Path
    train_metrics: dict[str, Any]
    evaluation: dict[str, Any]
    gate: dict[str, Any]
    lineage: dict[str, Any]
    ref: str | None = None
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def push_adapter(settings: Settings, adapter_dir: Path, name: str, base_manifest: Any, lineage: dict) -> str:
    """Push to the registry; returns ``name@N`` after verifying the stored version."""
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    lineage = dict(lineage)
    m = reg.push(adapter_dir, name, base_manifest, parent=lineage.pop("parent", None), lineage=lineage)
    reg.verify(m.ref)
    return str(m.ref)


def _run_pipeline(cfg: TrainConfig, settings: Settings, *, tracker: Any = None, force: bool = False, push: bool = True,
                 evaluate: bool = True, show_progress: bool = True, say: Callable[[str], None] = print,
                 console: Any = None, pid_file: Path | None = None, ray_address: str | None = None,
                 eval_lock: Any = None, eval_engine: Callable[[], str | None] | None = None) -> PipelineResult:
    """Run one config end to end. Raises :class:`GateFailed` when the gate fails without ``force``.

    ``eval_engine``: called once training is done, returns the root URL of a running engine to evaluate
    on (``eval.engine_url``; None: start one here). The quickstart's engine starts while the job trains."""
    import time

    from lorafleet.training.data import render_report
    from lorafleet.training.fingerprint import compute_fingerprint, dataset_hashes
    from lorafleet.training.gate import apply_gate
    from lorafleet.training.job import ensure_ray, run_training_job
    from lorafleet.training.lineage import build_lineage, resolve_parent
    from lorafleet.training.preflight import load_tokenizer, preflight

    t0 = time.perf_counter()
    manifest, base_dir, report = preflight(cfg, settings)
    if console is not None:
        render_report(report, console)
    report.raise_on_errors()
    parent = resolve_parent(cfg, settings, manifest)  # init_from: checked before any compute
    if evaluate and cfg.eval.engine_url:  # so is the engine to evaluate on, not found only after training
        from lorafleet.training.evaluate import check_eval_engine

        check_eval_engine(cfg.eval.engine_url, manifest.name, settings.engine_api_key)
    fingerprint = compute_fingerprint(cfg, load_tokenizer(base_dir))

    ensure_ray(ray_address, num_cpus=None)
    say(f"training {cfg.output_name} ({cfg.method}, {'QLoRA nf4' if cfg.quantization == 'nf4' else 'LoRA'}, "
        f"r={cfg.peft.r}) on Ray: {cfg.workers} worker(s) x {cfg.cpus_per_worker} CPU")
    job = run_training_job(cfg, settings, base_dir, show_progress=show_progress, pid_file=pid_file, parent=parent,
                           on_progress=tracker.on_progress if tracker is not None else None)
    train_metrics = dict(job.metrics, attempts=job.attempts, resumed_from_steps=job.resumed_from,
                         job_wall_s=round(job.wall_seconds, 1), workers=job.workers)
    if job.metrics.get("train_runtime_s"):
        train_metrics["train_tokens_per_s"] = round(job.metrics["num_input_tokens_seen"] / job.metrics["train_runtime_s"], 1)
    if job.metrics.get("precision"):
        say(f"computed in {job.metrics['precision']} (bf16_autocast: {str(cfg.bf16_autocast).lower()}), "
            f"malloc: {job.metrics.get('malloc', 'unknown')}")
    nodes = {w["node_id"] for w in job.workers}
    if len(nodes) > 1:
        say(f"{len(job.workers)} workers ran on {len(nodes)} Ray nodes")
    if job.attempts > 1:
        say(f"the job restarted {job.attempts - 1} time(s) and resumed from its last checkpoint")

    if tracker is not None:
        tracker.log_training(train_metrics, job.loss_history)
    evaluation: dict[str, Any] = {"base": {}, "adapter": {}}
    if evaluate and eval_engine is not None and (url := eval_engine()):
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"engine_url": url})})
    if evaluate:
        from lorafleet.training.evaluate import run_evaluation

        import contextlib

        with eval_lock if eval_lock is not None else contextlib.nullcontext():
            evaluation = run_evaluation(cfg, settings, manifest, base_dir, job.adapter_dir, say=say)
    gate = apply_gate(cfg.gate, evaluation.get("adapter", {}), evaluation.get("base", {}),
                      train_metrics.get("eval_loss"), evaluated=evaluation.get("sets", ()))
    gate.forced = force and not gate.passed
    lineage = build_lineage(cfg, manifest, dataset_hashes(cfg), train_metrics, evaluation, fingerprint,
                            gate.as_dict(), job.run_name)
    (job.adapter_dir.parent / "lineage.json").write_text(json.dumps(lineage, indent=1, default=str))
    if tracker is not None:
        tracker.log_evaluation(evaluation, gate.as_dict())
        tracker.log_lineage(lineage)
    result = PipelineResult(cfg, job.adapter_dir, train_metrics, evaluation, gate.as_dict(), lineage)
    say(gate.summary() + (" (pushing anyway: --force)" if gate.forced else ""))
    if not gate.passed and not force:
        result.wall_seconds = time.perf_counter() - t0
        raise GateFailed(f"{cfg.output_name}: {gate.summary()}; adapter kept at {job.adapter_dir} (--force pushes it)")
    if push:
        result.ref = push_adapter(settings, job.adapter_dir, cfg.output_name, manifest, lineage)
        say(f"pushed {result.ref}")
        if tracker is not None:
            tracker.set_ref(result.ref)
    result.wall_seconds = time.perf_counter() - t0
    return result


def run_pipeline(cfg: TrainConfig, settings: Settings, *, tracking_parent: str | None = None,
                 **kwargs: Any) -> PipelineResult:
    """Run one config end to end (keywords: those of :func:`_run_pipeline`), tracked in MLflow when
    ``tracking.mlflow_uri`` or ``MLFLOW_TRACKING_URI`` is set (``tracking_parent``: a sweep's parent
    run). Raises :class:`GateFailed` when the gate fails without ``force``."""
    from lorafleet.training.tracking import RunTracker

    tracker = RunTracker.start(cfg, parent_run_id=tracking_parent)
    if tracker is None:
        return _run_pipeline(cfg, settings, **kwargs)
    with tracker:
        return _run_pipeline(cfg, settings, tracker=tracker, **kwargs)
