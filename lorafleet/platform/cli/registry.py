"""`platform registry ...`: push, list, show, pull, verify, alias, gc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["registry_app"]

registry_app = typer.Typer(help="Immutable adapter versions (name@N), aliases and lineage.", no_args_is_help=True)


def _registry():
    from lorafleet.registry import open_registry

    return open_registry(get_settings())


@registry_app.command("push")
def push(
    folder: Annotated[Path, typer.Argument(help="A peft adapter folder (adapter_config.json + weights).")],
    name: Annotated[str, typer.Option("--name", help="Adapter name.")],
    base: Annotated[str | None, typer.Option("--base", help="Base it was trained on (default: the default base).")] = None,
    parent: Annotated[int | None, typer.Option(help="Version it was derived from.")] = None,
) -> None:
    """Publish FOLDER as the next version of NAME; prints NAME@N."""
    from lorafleet.registry.bases import BaseStore

    settings = get_settings()
    base_manifest = BaseStore(settings.layout.bases).require(base or settings.default_base)
    m = _registry().push(folder, name, base_manifest, parent=parent, max_lora_rank=settings.engine_max_lora_rank)
    typer.echo(m.ref)


@registry_app.command("list")
def list_(name: Annotated[str | None, typer.Argument(help="Only this adapter.")] = None) -> None:
    """List adapter versions with their aliases."""
    from rich.console import Console
    from rich.table import Table

    reg = _registry()
    table = Table("version", "created", "by", "base", "rank", "size", "aliases")
    for m in reg.list(name):
        aliases = [a for a, v in reg.aliases(m.name).items() if v == m.version]
        table.add_row(m.ref, m.created_at.strftime("%Y-%m-%d %H:%M:%S"), m.created_by, m.base.name, str(m.peft.r),
                      f"{m.size_bytes / 1e6:.1f} MB", ",".join(sorted(aliases)))
    Console().print(table)


@registry_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME@N, NAME@ALIAS or NAME (newest).")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole manifest as JSON.")] = False,
) -> None:
    """Show a version's manifest: lineage, metrics, files."""
    from lorafleet.registry.errors import NotFound
    from lorafleet.registry.manifest import parent_chain

    reg = _registry()
    m = reg.resolve(ref)
    if as_json:
        typer.echo(m.model_dump_json(indent=2))
        return
    typer.echo(f"{m.ref}  created {m.created_at.isoformat()} by {m.created_by}")
    typer.echo(f"base      {m.base.name} (weights {m.base.weights_sha256[:12]})")
    typer.echo(f"peft      {m.peft.peft_type} r={m.peft.r} alpha={m.peft.lora_alpha} targets={','.join(m.peft.target_modules)}")

    def find(r: str):
        try:
            return reg.resolve(r)
        except NotFound:
            return None

    chain = parent_chain(m, find)
    if chain:  # parent, grandparent, ...
        typer.echo(f"{'lineage':<9} {' <- '.join([m.ref, *chain])}")
    for key in ("method", "quantization", "seed", "dataset_sha256", "prompt_template_version",
                "library_versions", "training_metrics"):
        value = getattr(m, key)
        if value not in (None, {}, []):
            typer.echo(f"{key:<9} {json.dumps(value, default=str)[:200]}")
    _show_evaluation(m)
    if m.fingerprint is not None:
        typer.echo(f"{'fingerprint':<9} {m.fingerprint.rows} rows, features {', '.join(sorted(m.fingerprint.features))}")
    typer.echo(f"files     {len(m.files)} ({m.size_bytes / 1e6:.2f} MB)")


def _show_evaluation(m) -> None:
    """Every evaluated set (held-out, golden, suites), the base-vs-adapter table with the gate's verdicts."""
    from lorafleet.training.report import gate_line, report_lines, set_lines

    ev = m.eval_metrics or {}
    sets = set_lines(ev)
    if sets:
        typer.echo(f"{'eval sets':<9} " + sets[0])
        for line in sets[1:]:
            typer.echo(" " * 10 + line)
        for line in report_lines(ev, m.training_metrics or {}, m.gate):
            typer.echo(" " * 10 + line)
    elif ev:
        typer.echo(f"{'eval':<9} {json.dumps(ev, default=str)[:200]}")
    if m.gate is not None:
        typer.echo(f"{'gate':<9} {gate_line(m.gate)}")


@registry_app.command("pull")
def pull(
    ref: Annotated[str, typer.Argument(help="NAME@N, NAME@ALIAS or NAME.")],
    to: Annotated[Path | None, typer.Option("--to", help="Destination folder (default: ./NAME-N).")] = None,
) -> None:
    """Copy a version's files to a folder, verifying every byte."""
    reg = _registry()
    m = reg.resolve(ref)
    dest = reg.pull(m.ref, to or Path(f"{m.name}-{m.version}"))
    typer.echo(f"{m.ref} -> {dest}")


@registry_app.command("verify")
def verify(ref: Annotated[str, typer.Argument(help="NAME@N, NAME@ALIAS or NAME.")]) -> None:
    """Re-hash every stored file of a version against its manifest."""
    m = _registry().verify(ref)
    typer.echo(f"{m.ref}: {len(m.files)} files verified")


@registry_app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Adapter name.")],
    alias_: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version it should point to.")],
    reason: Annotated[str, typer.Option(help="Why (audit log).")] = "",
) -> None:
    """Point NAME@ALIAS at VERSION (recorded in the audit log)."""
    _registry().set_alias(name, alias_, version, reason=reason)
    typer.echo(f"{name}@{alias_} -> {name}@{version}")


@registry_app.command("gc")
def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False) -> None:
    """Remove versions no alias points to, no routes file names and that are not the newest."""
    from lorafleet.registry.refs import routed_versions_in
    from lorafleet.serving.routes_source import open_routes

    routes = open_routes(get_settings())
    removed = _registry().gc(routed_versions_in(routes.read(), routes.name), dry_run=dry_run)
    for line in removed:
        typer.echo(("would remove " if dry_run else "removed ") + line)
    if not removed:
        typer.echo("nothing to remove")
