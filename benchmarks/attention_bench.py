"""One attention layer of a padding-free training step on the CPU: transformers' sdpa over the flat
sequence with its block mask vs lorafleet's per-row attention (``lorafleet/training/attention.py``).
Prints forward + backward time per call and draws benchmarks/out/attention_bench.png.

    .venv/bin/python benchmarks/attention_bench.py

Shapes: SmolLM2-135M's attention (9 query heads, 3 kv heads, head dim 64), 8 rows of 33-70
tokens (a support-intents batch of 8), bf16 inputs as under autocast, 2 threads.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lorafleet.training.attention import per_row_attention

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, q, k, v, grad, repeats: int) -> float:
    """Median seconds of one forward + backward over ``repeats`` rounds of 20 calls."""
    rounds = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(20):
            q.grad = k.grad = v.grad = None
            fn(q, k, v).backward(grad)
        rounds.append((time.perf_counter() - t) / 20)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="40,52,33,61,45,48,70,38", help="row lengths of the flat sequence")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = [int(x) for x in args.lengths.split(",")]
    total, heads, kv_heads, dim = sum(lengths), 9, 3, 64
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    row = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pos = torch.cat([torch.arange(n) for n in lengths])
    block_mask = ((row[:, None] == row[None, :]) & (pos[:, None] >= pos[None, :]))[None, None]
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, heads // kv_heads
    q, k, v = (torch.randn(1, h, total, dim, dtype=torch.bfloat16, requires_grad=True)
               for h in (heads, kv_heads, kv_heads))

    variants = {
        "sdpa, flat + block mask": lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=block_mask, enable_gqa=True).transpose(1, 2),
        "per row (lorafleet)": lambda q, k, v: per_row_attention(module, q, k, v, None, cu_seq_lens_q=cu)[0],
    }
    grad = torch.randn(1, total, heads, dim, dtype=torch.bfloat16)
    results = [{"variant": name, "ms": 1e3 * _time(fn, q, k, v, grad, args.repeats)} for name, fn in variants.items()]
    base = results[0]["ms"]
    print(f"{len(lengths)} rows, {total} tokens, {args.threads} threads: forward + backward of one layer")
    for r in results:
        print(f"  {r['variant']:<26}{r['ms']:8.2f} ms  {base / r['ms']:5.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_bench.json").write_text(json.dumps({"lengths": lengths, "results": results}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh([r["variant"] for r in results], [r["ms"] for r in results], color=["tab:gray", "tab:blue"])
    ax.set_xlabel("ms per layer, forward + backward")
    ax.set_title(f"one attention layer, {len(lengths)} rows as one flat sequence ({total} tokens), CPU")
    fig.tight_layout()
    fig.savefig(args.out / "attention_bench.png", dpi=120)
    print(f"wrote {args.out / 'attention_bench.png'}")


if __name__ == "__main__":
    main()
