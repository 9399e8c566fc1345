"""`platform promote`, `platform rollback`, `platform canary watch`, `platform status`."""

from __future__ import annotations

from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["promote", "rollback", "status", "canary_app", "dashboard"]

canary_app = typer.Typer(help="Automatic canary analysis.", no_args_is_help=True)


def _promoter(base: str | None):
    from lorafleet.platform.control.gates import golden_gate
    from lorafleet.platform.control.promotion import Promoter

    import os

    settings = get_settings()
    gate = golden_gate(settings, admin_key=os.environ.get("LORAFLEET_ADMIN_KEY"), say=typer.echo)
    return Promoter(settings, base or settings.default_base, gate=gate)


def _gateway_url(explicit: str | None) -> str | None:
    if explicit:
        return explicit.rstrip("/").removesuffix("/v1")
    from lorafleet.serving.pidfile import read_pid_file

    record = read_pid_file(get_settings())
    return record["url"].removesuffix("/v1") if record else None


def _show(change) -> None:
    typer.echo(change.diff.rstrip() or "(routes file unchanged)")


def promote(
    ref: Annotated[str | None, typer.Argument(help="name@N to promote (default: the newest version), or NAME with --full.")] = None,
    canary: Annotated[str | None, typer.Option("--canary", help="Send this share of the route to REF, e.g. 5%.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Make the route's canary its stable version.")] = False,
    steps: Annotated[str | None, typer.Option(help="Progressive delivery: weights to step through, e.g. 5,25,50,100.")] = None,
    interval: Annotated[str, typer.Option(help="Time between steps, e.g. 30s, 10m (with --steps).")] = "10m",
    route: Annotated[str | None, typer.Option(help="Route (logical model) to change; default: the adapter's name.")] = None,
    base: Annotated[str | None, typer.Option(help="Base model the routes serve.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the golden-set gate fails.")] = False,
    reason: Annotated[str, typer.Option(help="Why: recorded in the audit log (required with --force).")] = "",
) -> None:
    """Send a share of a route's traffic to a version (--canary), or finish the rollout (--full).

    The version is checked first: it exists, was trained on the served base, fits the
    engine, and passes its golden-set gate. Every change is one atomic routes-file write,
    shown as a diff and recorded (who, when, why, before, after).
    """
    from lorafleet.core.errors import InputError
    from lorafleet.platform.control.promotion import parse_percent

    promoter = _promoter(base)
    if full:
        if ref is None:
            raise InputError("REF", ref, "--full needs the route name")
        _show(promoter.full(route or ref.partition("@")[0], reason))
        return
    if steps:
        from lorafleet.platform.control.progressive import parse_duration_s, parse_steps, run_steps

        plan = parse_steps(steps)
        change = promoter.canary(ref, plan[0], route, reason, force)
        _show(change)
        run_steps(promoter, change.route, plan[1:], parse_duration_s(interval), say=typer.echo)
        return
    if canary is None:
        raise InputError("--canary", canary, "give --canary PCT, --steps LIST or --full")
    _show(promoter.canary(ref, parse_percent(canary), route, reason, force))


def rollback(
    name: Annotated[str, typer.Argument(help="Route (logical model) to roll back.")],
    reason: Annotated[str, typer.Option(help="Why: recorded in the audit log.")] = "",
) -> None:
    """Revert a route's last change: the canary goes (to 0%), or with no canary the stable
    version goes back to the previous stable. One routes-file change, shown as a diff.
    """
    _show(_promoter(None).rollback(name, reason))


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    gateway: Annotated[str | None, typer.Option(help="Gateway URL (default: the one `platform serve --detach` started).")] = None,
    window_s: Annotated[float, typer.Option(help="Measure rates over this many seconds (0: since the gateway started).")] = 0.0,
) -> None:
    """Per logical model: stable and canary versions and weights, request rate, error and
    schema-failure rates, p95 latency and drift per variant; per engine, the adapter cache's hit
    rate, misses, unloads and slots, with advice when evictions make misses dominate.
    """
    import json

    from lorafleet.platform.control.status import collect, render_cache, render_status
    from lorafleet.serving.routes_source import open_routes

    routes = open_routes(get_settings())
    url = _gateway_url(gateway)
    rows, cache = collect(routes, url, window_s)
    if as_json:
        typer.echo(json.dumps({"gateway": url, "routes": rows, "adapter_cache": cache}, indent=2))
        return
    render_status(rows, f"routes: {routes.name}  gateway: {url or 'not running'}")
    render_cache(cache)


@canary_app.command("watch")
def canary_watch(
    name: Annotated[str, typer.Argument(help="Route whose canary to watch.")],
    gateway: Annotated[str | None, typer.Option(help="Gateway URL (default: the one `platform serve --detach` started).")] = None,
    max_intervals: Annotated[int | None, typer.Option(help="Stop after this many judgements.")] = None,
) -> None:
    """Compare the canary with stable every interval (thresholds from the routes file's
    `analysis:` block); roll back on a breach, step up on a pass, promote after the last step.
    """
    from lorafleet.platform.control.analysis import CanaryWatcher
    from lorafleet.platform.errors import PlatformError
    from lorafleet.serving.routes_source import load_routes

    url = _gateway_url(gateway)
    if url is None:
        raise PlatformError("no gateway is running: start one with `platform serve --detach` or pass --gateway")
    promoter = _promoter(None)
    watcher = CanaryWatcher(
        url, name, lambda: load_routes(promoter.routes).routes.get(name),
        step_to=lambda pct, why: _show(promoter.step(name, pct, why)),
        promote=lambda why: _show(promoter.full(name, why)),
        rollback=lambda why: _show(promoter.rollback(name, why)),
        say=typer.echo,
    )
    typer.echo(f"outcome: {watcher.run(max_intervals)}")


def dashboard(
    out: Annotated[str, typer.Option("--out", help="Folder for the PNGs.")] = "dashboards",
    prometheus: Annotated[str, typer.Option(help="Prometheus URL.")] = "http://127.0.0.1:9090",
    route: Annotated[str | None, typer.Option(help="Route for the canary dashboard (default: all).")] = None,
    minutes: Annotated[float, typer.Option(help="How far back to draw.")] = 30.0,
) -> None:
    """Render the Grafana dashboards' panels to PNG from Prometheus (for people without Grafana)."""
    from pathlib import Path

    from lorafleet.platform.dashboards import render_png

    for path in render_png(prometheus.rstrip("/"), Path(out), route, minutes):
        typer.echo(path)
