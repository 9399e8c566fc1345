"""The load test's picture: latency percentiles, throughput and the canary share over time."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.common import pct

__all__ = ["plot", "BIN_S"]

BIN_S = 5.0


def plot(records: list[dict], weights: dict[str, float], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    t0 = min(r["t"] for r in records)
    n_bins = max(1, math.ceil((max(r["t_end"] for r in records) - t0) / BIN_S))
    by_bin: list[list[dict]] = [[] for _ in range(n_bins)]
    for r in records:  # latency and throughput by completion time
        by_bin[min(n_bins - 1, int((r["t_end"] - t0) / BIN_S))].append(r)
    xs = [(i + 0.5) * BIN_S for i in range(n_bins)]
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        axes[0].plot(xs, [pct([r["latency_s"] for r in b], q) if b else math.nan for b in by_bin], style,
                     marker="o", ms=3, label=f"p{q}")
    axes[0].set(xlabel="seconds into the run", ylabel="latency (s, whole exchange)",
                title=f"latency percentiles per {BIN_S:g} s window")
    axes[0].legend()
    axes[1].plot(xs, [sum(1 for r in b if r["status"] == 200) / BIN_S for b in by_bin], marker="o", ms=3,
                 label="HTTP 200")
    axes[1].plot(xs, [sum(1 for r in b if r["status"] != 200) / BIN_S for b in by_bin], marker="x", ms=4,
                 color="tab:red", label="other status")
    axes[1].set(xlabel="seconds into the run", ylabel="requests / s", title="throughput")
    axes[1].legend()
    ax = axes[2]
    for i, (route, weight) in enumerate(sorted(weights.items())):
        rs = sorted((r for r in records if r["route"] == route and r["variant"] in ("stable", "canary")),
                    key=lambda r: r["t"])
        if not rs:
            continue
        color = f"C{i}"
        seen = canary = 0
        cx, cy = [], []
        for r in rs:
            seen += 1
            canary += r["variant"] == "canary"
            cx.append(r["t"] - t0)
            cy.append(100 * canary / seen)
        ax.plot(cx, cy, color=color, drawstyle="steps-post",
                label=f"{route}: cumulative ({canary} of {seen} requests)")
        window = 2 * BIN_S
        bins: dict[int, list[int]] = {}
        for r in rs:
            bins.setdefault(int((r["t"] - t0) / window), []).append(r["variant"] == "canary")
        ax.plot([(k + 0.5) * window for k in sorted(bins)], [100 * sum(v) / len(v) for _, v in sorted(bins.items())],
                "o", color=color, ms=3, alpha=0.6, label=f"{route}: per {window:g} s")
        ax.axhline(weight, ls="--", color=color, alpha=0.7, label=f"{route}: configured {weight:g}%")
    ax.set(xlabel="seconds into the run", ylabel="canary share (%)", title="canary share (X-Lorafleet-Variant)")
    if weights:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no route has a canary", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
