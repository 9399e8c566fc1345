"""The load test's numbers: per-request records and locust's counts read back, summarised
(requests, failures, rps, exact percentiles, concurrency) and printed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks.common import pct

__all__ = ["read_records", "read_locust_stats", "summarise", "canary_share", "print_summary"]


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            try:  # while a run goes on, the last line may be half-written
                r["t"], r["latency_s"] = float(r["t"]), float(r["latency_s"])
                r["t_end"] = float(r.get("t_end") or r["t"] + r["latency_s"])
                r["status"] = int(r["status"] or 0)
                r["ttft_s"] = float(r["ttft_s"]) if r["ttft_s"] else None
            except (TypeError, ValueError):
                continue
            rows.append(r)
    return rows


def read_locust_stats(prefix: Path) -> dict[str, dict]:
    """Locust's own final counts (``<prefix>_final.json``, written as it quits): name -> counts.

    Its ``_stats.csv`` is written on a timer and can miss the requests that finish during the
    stop timeout, so the JSON is the one compared with the per-request records.
    """
    path = Path(f"{prefix}_final.json")
    if not path.is_file():
        return {}
    out = {e["name"]: {"Request Count": e["num_requests"], "Failure Count": e["num_failures"]}
           for e in json.loads(path.read_text())}
    out["Aggregated"] = {k: sum(e[k] for e in out.values()) for k in ("Request Count", "Failure Count")}
    return out


def summarise(records: list[dict], locust_stats: dict[str, dict]) -> dict:
    """Per request type and overall: requests, failures, rps, p50/p95/p99 (exact, from every request).

    Failures come from locust (status, stream ends, in-band errors); latencies from the
    per-request records. Throughput is over the span from the first request's start to the
    last one's end. Mean concurrency is Little's law (summed latency / span).
    """
    if not records:
        return {"types": [], "total": None}
    start = min(r["t"] for r in records)
    end = max(r["t_end"] for r in records)
    span = max(end - start, 1e-9)

    def row(name: str, rs: list[dict]) -> dict:
        lat = [r["latency_s"] for r in rs]
        ttft = [r["ttft_s"] for r in rs if r["ttft_s"] is not None]
        stats = locust_stats.get(name) or {}
        failures = int(stats["Failure Count"]) if stats else sum(1 for r in rs if r["status"] != 200)
        return {"name": name, "requests": len(rs), "failures": failures, "rps": len(rs) / span,
                "p50_s": pct(lat, 50), "p95_s": pct(lat, 95), "p99_s": pct(lat, 99),
                "ttft_p50_s": pct(ttft, 50) if ttft else None,
                "locust_requests": int(stats["Request Count"]) if stats else None}

    names = sorted({r["name"] for r in records})
    types = [row(n, [r for r in records if r["name"] == n]) for n in names]
    total = row("Aggregated", records)
    total["concurrency_mean"] = sum(r["latency_s"] for r in records) / span
    total["span_s"] = span
    return {"types": types, "total": total}


def canary_share(records: list[dict], route: str) -> dict:
    rs = [r for r in records if r["route"] == route and r["variant"] in ("stable", "canary")]
    canary = sum(1 for r in rs if r["variant"] == "canary")
    return {"route": route, "requests": len(rs), "canary": canary, "share": canary / len(rs) if rs else None}


def print_summary(summary: dict) -> None:
    from benchmarks.common import print_table

    rows = [[t["name"], t["requests"], t["failures"], t["rps"], t["p50_s"], t["p95_s"], t["p99_s"]]
            for t in [*summary["types"], summary["total"]]]
    print_table(f"load test: {summary['users']} users for {summary['run_time']} against {summary['url']} "
                f"(latency = whole exchange, seconds)", ["request type", "requests", "failures", "rps", "p50 s",
                                                         "p95 s", "p99 s"], rows)
    total = summary["total"]
    print(f"\nheld {total['rps']:.2f} requests/s with {total['concurrency_mean']:.1f} requests in flight on "
          f"average over {total['span_s']:.0f} s; {total['failures']} failed "
          f"(locust counted {total['locust_requests']} requests)")
    for c in summary["canary"]:
        share = "n/a" if c["share"] is None else f"{100 * c['share']:.1f}%"
        print(f"canary share of {c['route']}: {share} ({c['canary']} of {c['requests']}; configured "
              f"{c['configured_percent']:g}%)")
    for route, counts in sorted(summary["gateway_counts"].items()):
        print(f"gateway /metrics, {route}: " + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(counts.items())))
    if total["failures"]:
        print(f"failures by type and message: {summary['locust_failures_csv']}")
    print(f"plot: {summary['png']}")
