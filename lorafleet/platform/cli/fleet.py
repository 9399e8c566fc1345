"""`platform engine` (one engine of a fleet) and `platform routes` (the routes document itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["engine", "routes_app"]

routes_app = typer.Typer(help="The routes document: the one place that decides traffic.", no_args_is_help=True)


def engine(
    base: Annotated[str | None, typer.Option(help="Base model (default: the settings' default base).")] = None,
    host: Annotated[str, typer.Option(help="Bind address (off loopback needs LORAFLEET_ENGINE_API_KEY).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    kind: Annotated[str, typer.Option(help="vllm (a vLLM OpenAI server) or rayserve (a Ray Serve LLM app).")] = "vllm",
) -> None:
    """Run one engine of a fleet: the base, with adapters fetched from the registry on demand.

    A request naming `name@N` makes the engine fetch that version from the registry
    (LORAFLEET_REGISTRY_URL), verify every file's sha256 and its base, into its own cache.
    The base is pulled into the home first if it is missing.
    """
    from lorafleet.core.errors import InputError
    from lorafleet.core.names import check_name

    settings = get_settings()
    name = check_name(base or settings.default_base, "--base")
    if kind == "vllm":
        from lorafleet.platform.engine_run import run_engine

        run_engine(settings, name, host, port)
    elif kind == "rayserve":
        from lorafleet.platform.engine_run import _base_dir
        from lorafleet.serving.rayserve_app import serve_rayserve

        serve_rayserve(settings, _base_dir(settings, name), name, host, port, api_key=settings.engine_api_key)
    else:
        raise InputError("--kind", kind, "must be vllm or rayserve")


@routes_app.command("show")
def routes_show() -> None:
    """Print the routes document (and say where it lives)."""
    from lorafleet.serving.routes_source import open_routes

    source = open_routes(get_settings())
    typer.echo(f"# {source.name}", err=True)
    typer.echo(source.read().rstrip() or "routes: {}")


@routes_app.command("apply")
def routes_apply(
    file: Annotated[Path, typer.Argument(help="A routes YAML file to make the routes document.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "routes applied",
) -> None:
    """Replace the routes document with FILE (validated first), as one recorded change.

    With routes in the registry, the JSON schemas FILE names by relative path are uploaded
    beside the document first, so every gateway finds them.
    """
    import difflib

    from lorafleet.core.errors import InputError
    from lorafleet.core.users import current_user
    from lorafleet.serving.routes import RoutesFile
    from lorafleet.serving.routes_source import StoreRoutes, open_routes

    if not file.is_file():
        raise InputError("FILE", str(file), "no such file")
    text = file.read_text(encoding="utf-8")
    routes = RoutesFile.parse_text(text, str(file))  # ConfigError names what is wrong
    source = open_routes(get_settings())
    if isinstance(source, StoreRoutes):
        for route in routes.routes.values():
            spec = route.schema_path
            if spec and not spec.startswith("pydantic:"):
                path = file.parent / spec
                if not path.is_file():
                    raise InputError("schema", spec, f"not found beside {file}")
                source.put_schema(spec, path.read_text(encoding="utf-8"))
    result = source.update(lambda old: None if old == text else
                           (text, {"route": "*", "kind": "apply", "actor": current_user(), "reason": reason}))
    if result is None:
        typer.echo(f"{source.name}: unchanged")
        return
    old, new, _ = result
    typer.echo("".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                            fromfile=f"{source.name} (before)", tofile=f"{source.name} (after)")))


@routes_app.command("history")
def routes_history(
    route: Annotated[str | None, typer.Argument(help="Only this route's changes.")] = None,
) -> None:
    """Every recorded change of the routes document, oldest first: when, who, what, why."""
    from lorafleet.serving.routes_source import open_routes

    for e in open_routes(get_settings()).history():
        if route is None or e.get("route") in (route, "*"):
            after = e.get("after") or {}
            canary = (after.get("canary") or {}) if isinstance(after, dict) else {}
            what = f"stable={after.get('stable')}" + (f" canary={canary.get('version')}@{canary.get('weight')}%"
                                                       if canary else "") if after else ""
            typer.echo(f"{e.get('at')}  {e.get('route')}  {e.get('kind')}  {e.get('actor')}  {what}  {e.get('reason')}")
