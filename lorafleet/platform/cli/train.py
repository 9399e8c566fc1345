"""`platform train` and `platform data check`: thin Typer functions over lorafleet.training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["train", "data_app"]

data_app = typer.Typer(help="Datasets: checks run before any training.", no_args_is_help=True)


@data_app.command("check")
def data_check(
    config: Annotated[Path, typer.Argument(help="Training config YAML.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")] = None,
) -> None:
    """Check a config's datasets: row schema, roles, rendering, token lengths, duplicates, leakage, balance."""
    from rich.console import Console

    from lorafleet.training.config import load_train_config
    from lorafleet.training.data import render_report
    from lorafleet.training.preflight import preflight

    cfg = load_train_config(config, set_ or [])
    _, _, report = preflight(cfg, get_settings())
    render_report(report, Console())
    report.raise_on_errors()
    typer.echo("data check passed")


def train(
    configs: Annotated[list[Path], typer.Argument(help="One or more training config YAML files.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Join this Ray cluster instead of starting one.")] = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="Run one job per value, e.g. lr=1e-4,2e-4.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Push even if the gate fails (recorded in the manifest).")] = False,
    no_push: Annotated[bool, typer.Option("--no-push", help="Train and evaluate, but do not push.")] = False,
) -> None:
    """Check the data, train a LoRA/QLoRA adapter (SFT or DPO) on Ray, evaluate it against the
    base on a real vLLM engine, apply the gate and push NAME@N to the registry."""
    from rich.console import Console

    from lorafleet.training.errors import TrainingError
    from lorafleet.training.pipeline import run_pipeline
    from lorafleet.training.report import comparison_rows, report_table
    from lorafleet.training.sweep import plan_jobs, run_jobs

    console = Console()
    jobs = plan_jobs(list(configs), set_ or [], sweep)
    results = run_jobs(jobs, get_settings(), run_pipeline, force=force, push=not no_push,
                       show_progress=len(jobs) == 1, say=lambda m: console.print(m), console=console,
                       ray_address=address)
    failed = []
    for cfg, res in zip(jobs, results):
        if isinstance(res, Exception):
            failed.append(f"{cfg.output_name}: {res}")
            continue
        if comparison_rows(res.evaluation, res.train_metrics):
            console.print(report_table(res.evaluation, res.train_metrics, res.gate,
                                       title=f"{cfg.output_name}: base vs adapter"))
        else:
            console.print(f"{cfg.output_name}: no evaluation sets in the config (data.eval, data.golden, "
                          "eval.suites), so no base-vs-adapter table")
        where = f"pushed {res.ref}" if res.ref else f"adapter at {res.adapter_dir}"
        console.print(f"{where} ({res.wall_seconds:.0f}s; {res.gate.get('passed') and 'gate passed' or 'gate FAILED'})")
    if failed:
        raise TrainingError(" | ".join(failed))
