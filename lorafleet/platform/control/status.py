"""`platform status`: per logical model, its versions and weights and how each variant does."""

from __future__ import annotations

import math
import time

from lorafleet.platform.control.analysis import variant_versions
from lorafleet.platform.control.observe import CacheFigures, cache_figures, figures, scrape
from lorafleet.serving.routes_source import load_routes

__all__ = ["collect", "collect_status", "render_cache", "render_status"]


def _num(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else round(x, digits)


def collect_status(routes_file, gateway_root_url: str | None, window_s: float = 0.0) -> list[dict]:
    """One row per (route, variant). Figures cover ``window_s`` seconds, or the gateway's life if 0."""
    return collect(routes_file, gateway_root_url, window_s)[0]


def collect(routes_file, gateway_root_url: str | None, window_s: float = 0.0) -> tuple[list[dict], list[dict]]:
    """(one row per route and variant, one row per engine's adapter cache with its advice)."""
    routes = load_routes(routes_file)
    before = now = None
    if gateway_root_url:
        before = scrape(gateway_root_url) if window_s > 0 else None
        if window_s > 0:
            time.sleep(window_s)
        now = scrape(gateway_root_url)
    cache = [_cache_row(f) for f in cache_figures(now, before)] if now is not None else []
    rows = []
    for name, route in routes.routes.items():
        versions = variant_versions(route)
        figs = figures(now, before, name, versions) if now is not None else {}
        weights = {"stable": 100.0 - (route.canary.weight if route.canary else 0.0)}
        if route.canary:
            weights["canary"] = route.canary.weight
        for variant, version in versions.items():
            f = figs.get(variant)
            rows.append({
                "route": name, "variant": variant, "version": route.stable if variant == "stable" else version,
                "weight_percent": weights[variant],
                "requests": int(f.requests) if f else None,
                "request_rate_per_s": _num(f.request_rate, 2) if f and window_s > 0 else None,
                "error_rate": _num(f.error_rate) if f else None,
                "schema_failure_rate": _num(f.schema_failure_rate) if f and f.schema_checks else None,
                "p95_latency_s": _num(f.latency_quantile_s(0.95)) if f else None,
                "drift_psi": _num(f.drift_psi) if f else None,
            })
    return rows, cache


def _cache_row(f: CacheFigures) -> dict:
    return {"engine": f.engine, "adapter_requests": int(f.requests), "hit_rate": _num(f.hit_rate),
            "misses": int(f.misses), "failed_loads": int(f.loads_failed), "unloads": int(f.unloads),
            "loaded": int(f.loaded), "slots": int(f.slots), "advice": f.advice()}


def render_cache(rows: list[dict]) -> None:
    """The adapter cache per engine, then any advice (misses with evictions: too few slots)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    table = Table(title="adapter cache per engine")
    for col in ("engine", "adapter requests", "hit rate", "misses", "failed loads", "unloads", "loaded / slots"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in rows:
        hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.1%}"
        table.add_row(r["engine"], str(r["adapter_requests"]), hit, str(r["misses"]), str(r["failed_loads"]),
                      str(r["unloads"]), f"{r['loaded']} / {r['slots']}")
    console = Console(width=max(Console().width, 150))
    console.print(table)
    for r in rows:
        if r["advice"]:
            console.print(f"[bold yellow]advice[/]: {r['advice']}")


def render_status(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("route", "variant", "version", "weight %", "requests", "req/s", "errors", "schema fail",
                "p95 s", "drift PSI"):
        table.add_column(col, justify="left" if col in ("route", "variant", "version") else "right")

    def fmt(v, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v:.1%}" if pct else f"{v:g}"

    for r in rows:
        table.add_row(r["route"], r["variant"], r["version"], fmt(r["weight_percent"]), fmt(r["requests"]),
                      fmt(r["request_rate_per_s"]), fmt(r["error_rate"], True), fmt(r["schema_failure_rate"], True),
                      fmt(r["p95_latency_s"]), fmt(r["drift_psi"]))
    Console(width=max(Console().width, 150)).print(table)
