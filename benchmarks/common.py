"""Shared by the benchmark scripts: output folder, percentiles, a table printer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["OUT", "pct", "print_table"]

OUT = Path(__file__).parent / "out"


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [header] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


