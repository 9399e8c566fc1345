"""lorafleet's CPU LoRA ops on batches that mix adapters: one matmul per adapter in the batch
against one matmul over every slot (then a gather), per shrink + expand pair, for the tiny test
base and SmolLM2-135M's projection sizes. Prints a table, writes
``benchmarks/out/cpu_lora_ops_bench.{json,png}``; it is what ``STACKED_MACS_PER_ADAPTER`` in
:mod:`lorafleet.engine.cpu_lora` is set from.

    .venv/bin/python benchmarks/cpu_lora_ops_bench.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import print_table  # noqa: E402
from lorafleet.engine import cpu_lora  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "cpu_lora_ops_bench.json"
# (label, in, out, rank): tiny's q_proj (64 -> 64, rank 8); SmolLM2's q_proj (576) and up_proj (576 -> 1536), rank 16
SHAPES = [("tiny 64->64 r8", 64, 64, 8), ("smollm2 576->576 r16", 576, 576, 16), ("smollm2 576->1536 r16", 576, 1536, 16)]


def _time_pair(x, a, b, idx, repeat: int) -> float:
    """Seconds for one shrink + expand (the two ops a LoRA layer runs), best of ``repeat`` batches."""
    buf = torch.zeros(x.shape[0], a.shape[2], dtype=torch.float32)
    y = torch.zeros(x.shape[0], b.shape[2], dtype=x.dtype)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(20):
            cpu_lora.bgmv_shrink(x, a, buf, idx, 1.0)
            cpu_lora.bgmv_expand(buf.to(x.dtype), b, y, idx, True)
        best = min(best, (time.perf_counter() - t0) / 20)
    return best


def run(tokens_list: list[int], distinct_list: list[int], slots_list: list[int], dtype, repeat: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for label, d_in, d_out, rank in SHAPES:
        for slots in slots_list:
            a = torch.randn(slots, 1, rank, d_in, generator=g).to(dtype)
            b = torch.randn(slots, 1, d_out, rank, generator=g).to(dtype)
            for tokens in tokens_list:
                x = torch.randn(tokens, d_in, generator=g).to(dtype)
                for distinct in [k for k in distinct_list if k <= min(slots, tokens)]:
                    idx = torch.arange(tokens) % distinct
                    row = {"shape": label, "slots": slots, "tokens": tokens, "distinct": distinct,
                           "macs": tokens * slots * rank * max(d_in, d_out)}
                    saved = cpu_lora.STACKED_MACS_PER_ADAPTER
                    try:  # always stacked, never stacked, and the shipped threshold
                        for key, threshold in (("stacked_us", 1 << 62), ("per_adapter_us", 0), ("chosen_us", saved)):
                            cpu_lora.STACKED_MACS_PER_ADAPTER = threshold
                            row[key] = _time_pair(x, a, b, idx, repeat) * 1e6
                    finally:
                        cpu_lora.STACKED_MACS_PER_ADAPTER = saved
                    row["speedup"] = row["per_adapter_us"] / row["stacked_us"]
                    rows.append(row)
    return rows


def plot(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label in dict.fromkeys(r["shape"] for r in rows):
        pts = sorted((r["macs"] / r["distinct"], r["speedup"]) for r in rows if r["shape"] == label)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=label, s=18)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axvline(cpu_lora.STACKED_MACS_PER_ADAPTER, color="red", lw=0.8, ls="--",
               label="STACKED_MACS_PER_ADAPTER (stacked at or left of it)")
    ax.set(xscale="log", yscale="log", xlabel="tokens x slots x rank x max(in, out) / adapters in the batch",
           ylabel="per-adapter time / stacked time", title="CPU LoRA shrink + expand, batches of several adapters")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=110)
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the engine worker runs on 1 core by default)")
    ap.add_argument("--tokens", type=int, nargs="*", default=[8, 32, 64, 256, 1024])
    ap.add_argument("--distinct", type=int, nargs="*", default=[2, 4, 8, 32])
    ap.add_argument("--slots", type=int, nargs="*", default=[4, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.tokens, args.distinct, args.slots, torch.bfloat16, args.repeat)
    print_table("CPU LoRA shrink + expand on batches of several adapters (bf16)",
                ["shape", "slots", "tokens", "distinct", "MACs", "per-adapter µs", "stacked µs", "speed-up",
                 "chosen µs"],
                [[r["shape"], r["slots"], r["tokens"], r["distinct"], r["macs"], f"{r['per_adapter_us']:.0f}",
                  f"{r['stacked_us']:.0f}", f"{r['speedup']:.2f}x", f"{r['chosen_us']:.0f}"] for r in rows])
    best = sum(min(r["per_adapter_us"], r["stacked_us"]) for r in rows)
    print(f"summed over the rows: per-adapter {sum(r['per_adapter_us'] for r in rows) / 1e3:.1f} ms, "
          f"stacked {sum(r['stacked_us'] for r in rows) / 1e3:.1f} ms, chosen {sum(r['chosen_us'] for r in rows) / 1e3:.1f} ms, "
          f"best of the two {best / 1e3:.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    print(f"wrote {args.out} and {plot(rows, args.out)}")


if __name__ == "__main__":
    main()
