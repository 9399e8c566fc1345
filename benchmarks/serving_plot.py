"""The serving benchmark's picture: gateway vs direct, the stub runs, the adapter mix."""

from __future__ import annotations

from benchmarks.common import OUT
from benchmarks.stub_engine import PACED_MS

__all__ = ["plot"]


def plot(rows, stub_rows, paced_rows, mix_rows, first_s) -> None:
    OUT.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    c = [r[0] for r in rows]
    axes[0].plot(c, [r[3] for r in rows], "o-")
    axes[0].axhline(0.9, ls="--", c="r", label="target 0.9x")
    axes[0].set(xscale="log", xlabel="concurrent streams", ylabel="gateway / direct tok/s",
                title="throughput ratio (vLLM, tiny model)", ylim=(0, 1.2))
    axes[0].legend()
    axes[1].plot(c, [r[3] for r in stub_rows], "o-", label="+p50, instant stub")
    axes[1].plot(c, [r[4] for r in stub_rows], "s--", label="+p95, instant stub")
    axes[1].plot(c, [max(r[3], 0.01) for r in paced_rows], "o-", label=f"+p50, stub at {PACED_MS:g} ms/token")
    axes[1].plot(c, [max(r[4], 0.01) for r in paced_rows], "s--", label=f"+p95, stub at {PACED_MS:g} ms/token")
    axes[1].plot(c, [r[7] for r in stub_rows], "^:", label="gateway CPU per request")
    axes[1].axhline(2.0, ls="--", c="r", label="target +p50 2 ms")
    axes[1].set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="ms",
                title="latency the gateway adds (vs a stub upstream)")
    axes[1].legend(fontsize=7)
    axes[2].bar([str(r[0]) for r in mix_rows], [r[1] for r in mix_rows])
    for i, r in enumerate(mix_rows):
        axes[2].annotate(f"{r[2]:.2f}x", (i, r[1]), ha="center", va="bottom")
    axes[2].set(xlabel="distinct adapters in the mix (16 streams)", ylabel="tok/s",
                title=f"adapter mix; routes change -> first token {first_s * 1e3:.0f} ms")
    fig.tight_layout()
    path = OUT / "serving_bench.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")

