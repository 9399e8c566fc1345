"""Draw base vs adapter per set (whole-object and intent match) from the scores ``score.py`` wrote.

    .venv/bin/python examples/support-intents/plot_scores.py \\
        [benchmarks/out/support-intents-scores.json] [--out benchmarks/out/support-intents-base-vs-adapter.png]

The PNG goes under benchmarks/out/ (never committed); the numbers are also printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
METRICS = [("pass_rate", "whole-object match"), ("intent", "intent match"), ("schema_pass_rate", "schema pass")]


def _value(scores: dict, key: str) -> float:
    return scores["field_match"][key] if key in scores.get("field_match", {}) else scores.get(key, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", nargs="?", type=Path, default=REPO / "benchmarks" / "out" / "support-intents-scores.json")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "support-intents-base-vs-adapter.png")
    args = ap.parse_args()
    data = json.loads(args.scores.read_text())
    sets = list(data["adapter"])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8), sharey=True)
    width = 0.38
    for ax, (key, title) in zip(axes, METRICS):
        xs = range(len(sets))
        base = [_value(data.get("base", {}).get(s, {}), key) * 100 for s in sets]
        adapter = [_value(data["adapter"][s], key) * 100 for s in sets]
        b1 = ax.bar([x - width / 2 for x in xs], base, width, label="base", color="#9aa5b1")
        b2 = ax.bar([x + width / 2 for x in xs], adapter, width, label="adapter", color="#2f6fde")
        ax.bar_label(b1, fmt="%.0f", fontsize=8)
        ax.bar_label(b2, fmt="%.1f", fontsize=8)
        ax.set_xticks(list(xs), sets)
        ax.set_title(title)
        ax.set_ylim(0, 105)
        for s, b, a in zip(sets, base, adapter):
            print(f"{title:<20} {s:<8} base {b:5.1f}%  adapter {a:5.1f}%")
    axes[0].set_ylabel("% of rows (greedy, unconstrained)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("support-intents: SmolLM2-135M base vs LoRA adapter")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
