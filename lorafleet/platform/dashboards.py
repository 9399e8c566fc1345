"""The Grafana dashboards, defined once in Python.

`deploy/grafana/dashboards/*.json` are generated from here (`python -m
lorafleet.platform.dashboards deploy/grafana/dashboards`; a test keeps them in sync), and
`platform dashboard --out DIR` renders the same panels to PNG straight from Prometheus for
people without Grafana.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Panel", "DASHBOARDS", "grafana_json", "write_all", "render_png"]

RATE = "5m"
ERRORS = 'status=~"5..|422"'


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str  # may use $route
    legend: str
    unit: str = "short"


def _ratio(num: str, den: str, by: str) -> str:
    # "or ... * 0": a variant without any failure has no failure series, count it as zero
    return (f"(sum by ({by}) (rate({num}[{RATE}])) or sum by ({by}) (rate({den}[{RATE}])) * 0)"
            f" / sum by ({by}) (rate({den}[{RATE}]))")


def _p95(metric: str, by: str, sel: str = "") -> str:
    return f"histogram_quantile(0.95, sum by ({by}, le) (rate({metric}_bucket{sel}[{RATE}])))"


R = '{route="$route"}'

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "lorafleet-overview": ("lorafleet: overview", [
        Panel("Requests per second by route", f"sum by (route) (rate(lorafleet_requests_total[{RATE}]))",
              "{{route}}", "reqps"),
        Panel("Error ratio by route", _ratio(f"lorafleet_requests_total{{{ERRORS}}}", "lorafleet_requests_total",
                                             "route"), "{{route}}", "percentunit"),
        Panel("p95 latency by route", _p95("lorafleet_request_duration_seconds", "route"), "{{route}}", "s"),
        Panel("Completion tokens per second by route",
              f"sum by (route) (rate(lorafleet_completion_tokens_total[{RATE}]))", "{{route}}"),
    ]),
    "lorafleet-canary": ("lorafleet: canary vs stable", [
        Panel("Traffic share by variant (routes file, %)", f"lorafleet_route_info{R}", "{{variant}} {{version}}",
              "percent"),
        Panel("Requests per second by variant", f"sum by (variant) (rate(lorafleet_requests_total{R}[{RATE}]))",
              "{{variant}}", "reqps"),
        Panel("Error ratio by variant",
              _ratio(f'lorafleet_requests_total{{route="$route",{ERRORS}}}', f"lorafleet_requests_total{R}",
                     "variant"), "{{variant}}", "percentunit"),
        Panel("Schema-failure ratio by variant",
              _ratio(f"lorafleet_schema_failures_total{R}", f"lorafleet_schema_checks_total{R}", "variant"),
              "{{variant}}", "percentunit"),
        Panel("p95 latency by variant", _p95("lorafleet_request_duration_seconds", "variant", R), "{{variant}}",
              "s"),
        Panel("p95 time to first token by variant", _p95("lorafleet_time_to_first_token_seconds", "variant", R),
              "{{variant}}", "s"),
    ]),
    "lorafleet-cost": ("lorafleet: cost", [
        Panel("Cost per hour by route (USD)", f"sum by (route) (rate(lorafleet_cost_usd_total[{RATE}])) * 3600",
              "{{route}}", "currencyUSD"),
        Panel("Cost per hour by tenant (USD)", f"sum by (tenant) (rate(lorafleet_cost_usd_total[{RATE}])) * 3600",
              "{{tenant}}", "currencyUSD"),
        Panel("Tokens per second by tenant",
              f"sum by (tenant) (rate(lorafleet_prompt_tokens_total[{RATE}]) "
              f"+ rate(lorafleet_completion_tokens_total[{RATE}]))", "{{tenant}}"),
    ]),
    "lorafleet-drift": ("lorafleet: drift against training data", [
        Panel("Prompt-length drift (PSI) by version", 'lorafleet_drift_psi_ratio{feature="prompt_tokens"}',
              "{{route}} {{version}}"),
        Panel("Completion-length drift (PSI) by version", 'lorafleet_drift_psi_ratio{feature="completion_tokens"}',
              "{{route}} {{version}}"),
        Panel("Prompt embedding drift (cosine distance) by version", "lorafleet_drift_embedding_distance",
              "{{route}} {{version}} {{variant}}"),
    ]),
    "lorafleet-engines": ("lorafleet: engines and adapters", [
        Panel("Engine up", "lorafleet_engine_up", "{{engine}}"),
        Panel("Adapter versions loaded", "lorafleet_adapters_loaded", "{{engine}}"),
        Panel("Requests per second by engine", f"sum by (engine) (rate(lorafleet_engine_requests_total[{RATE}]))",
              "{{engine}}", "reqps"),
        Panel("Adapter loads per minute by result",
              f"sum by (result) (rate(lorafleet_adapter_loads_total[{RATE}])) * 60", "{{result}}"),
        Panel("p95 adapter load time", _p95("lorafleet_adapter_load_duration_seconds", "job"), "load", "s"),
        Panel("Adapter cache hit rate by engine",
              f'sum by (engine) (rate(lorafleet_adapter_cache_total{{result="hit"}}[{RATE}])) '
              f"/ sum by (engine) (rate(lorafleet_adapter_cache_total[{RATE}]))", "{{engine}}", "percentunit"),
        Panel("vLLM requests running", "vllm:num_requests_running", "{{instance}}"),
        Panel("vLLM KV-cache usage", "vllm:kv_cache_usage_perc", "{{instance}}", "percentunit"),
    ]),
}


def grafana_json(uid: str) -> dict:
    title, panels = DASHBOARDS[uid]
    uses_route = any("$route" in p.expr for p in panels)
    return {
        "uid": uid, "title": title, "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "tags": ["lorafleet"],
        "templating": {"list": [{
            "name": "route", "type": "query", "label": "route", "refresh": 2,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "query": {"query": "label_values(lorafleet_requests_total, route)", "refId": "route"},
            "definition": "label_values(lorafleet_requests_total, route)",
        }] if uses_route else []},
        "panels": [{
            "id": i + 1, "type": "timeseries", "title": p.title,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": p.expr, "legendFormat": p.legend,
                         "datasource": {"type": "prometheus", "uid": "prometheus"}}],
        } for i, p in enumerate(panels)],
    }


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for uid in DASHBOARDS:
        path = folder / f"{uid}.json"
        path.write_text(json.dumps(grafana_json(uid), indent=2) + "\n")
        out.append(path)
    return out


def render_png(prometheus_url: str, out: Path, route: str | None = None, minutes: float = 30.0) -> list[Path]:
    """Query every panel's expression over the last ``minutes`` and draw one PNG per dashboard."""
    import time

    import httpx
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    end = time.time()
    written = []
    for uid, (title, panels) in DASHBOARDS.items():
        fig, axes = plt.subplots((len(panels) + 1) // 2, 2, figsize=(14, 3.2 * ((len(panels) + 1) // 2)),
                                 squeeze=False)
        for ax, p in zip(axes.flat, panels, strict=False):
            expr = p.expr.replace('route="$route"', f'route=~"{route or ".+"}"')
            r = httpx.get(f"{prometheus_url}/api/v1/query_range", timeout=30, params={
                "query": expr, "start": end - minutes * 60, "end": end, "step": max(1, minutes * 60 / 200)})
            r.raise_for_status()
            for series in r.json()["data"]["result"]:
                labels = series["metric"]
                name = p.legend
                for k, v in labels.items():
                    name = name.replace("{{" + k + "}}", v)
                ts = [float(t) - end for t, _ in series["values"]]
                ax.plot([t / 60 for t in ts], [float(v) for _, v in series["values"]], label=name)
            ax.set_title(p.title, fontsize=10)
            ax.set_xlabel("minutes ago")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(title)
        fig.tight_layout()
        path = out / f"{uid}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/grafana/dashboards")):
        print(p)
