"""Several training jobs at once (``--sweep lr=1e-4,2e-4`` or several configs): each is its own
Ray Train job holding its own Ray resources; evaluations take turns on the engine."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig, load_train_config
from lorafleet.training.errors import TrainConfigError

__all__ = ["expand_sweep", "plan_jobs", "run_jobs", "SWEEP_ALIASES"]

SWEEP_ALIASES = {"lr": "learning_rate", "r": "peft.r", "alpha": "peft.alpha", "epochs": "epochs", "seed": "seed"}


def expand_sweep(spec: str | None) -> list[list[str]]:
    """``lr=1e-4,2e-4`` -> [["learning_rate=1e-4"], ["learning_rate=2e-4"]] (no spec: one empty set)."""
    if not spec:
        return [[]]
    key, sep, values = spec.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not items:
        raise TrainConfigError(f"--sweep {spec!r}: expected key=v1,v2,...")
    key = SWEEP_ALIASES.get(key.strip(), key.strip())
    return [[f"{key}={v}"] for v in items]


def plan_jobs(config_paths: list[Path], overrides: list[str], sweep: str | None) -> list[TrainConfig]:
    """Every (config, sweep value) pair, validated before anything runs; names get a suffix per sweep value."""
    jobs = []
    variants = expand_sweep(sweep)
    for path in config_paths:
        for extra in variants:
            cfg = load_train_config(path, [*overrides, *extra])
            if sweep:
                suffix = extra[0].split("=", 1)[1].replace(".", "p").replace("-", "m").lower()
                cfg = cfg.model_copy(update={"output_name": f"{cfg.output_name}-{suffix}"[:63]})
            jobs.append(cfg)
    return jobs


def run_jobs(jobs: list[TrainConfig], settings: Settings, runner: Callable[..., Any], **kwargs: Any) -> list[Any]:
    """Run ``runner(cfg, settings, eval_lock=..., **kwargs)`` for each job concurrently; returns results or errors.

    With MLflow tracking on, several jobs get one parent run, passed to the runner as ``tracking_parent``."""
    if len(jobs) == 1:
        return [runner(jobs[0], settings, eval_lock=None, **kwargs)]
    from lorafleet.training.tracking import start_sweep_parent

    parent = start_sweep_parent(jobs)
    if parent is not None:
        kwargs["tracking_parent"] = parent.run_id
    lock = threading.Lock()

    def one(cfg: TrainConfig) -> Any:
        try:
            return runner(cfg, settings, eval_lock=lock, **kwargs)
        except Exception as err:  # noqa: BLE001 - every job reports its own outcome
            return err

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(one, jobs))
    if parent is not None:
        parent.end("FAILED" if any(isinstance(r, Exception) for r in results) else "FINISHED")
    return results
