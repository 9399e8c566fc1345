"""`platform status`: per logical model, its versions and weights and how each variant does."""

from __future__ import annotations

import math
import time

from lorafleet.platform.control.analysis import variant_versions
from lorafleet.platform.control.observe import figures, scrape
from lorafleet.serving.routes_source import load_routes

__all__ = ["collect_status", "render_status"]


def _num(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else round(x, digits)


def collect_status(routes_file, gateway_root_url: str | None, window_s: float = 0.0) -> list[dict]:
    """One row per (route, variant). Figures cover ``window_s`` seconds, or the gateway's life if 0."""
    routes = load_routes(routes_file)
    before = now = None
    if gateway_root_url:
        before = scrape(gateway_root_url) if window_s > 0 else None
        if window_s > 0:
            time.sleep(window_s)
        now = scrape(gateway_root_url)
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
    return rows


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
