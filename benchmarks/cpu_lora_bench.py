"""The LoRA cost on vLLM's CPU engine: base vs adapter output tokens/s on SmolLM2-135M at 1/8/32
streams, for each engine setting that could narrow it. Prints a table, writes
``benchmarks/out/cpu_lora_bench.json`` and draws ``benchmarks/out/cpu_lora_bench.png``.

    LORAFLEET_HOME=/tmp/bench-home .venv/bin/python benchmarks/cpu_lora_bench.py [--adapter DIR] [--quick]

Settings (one engine start each): vLLM's own CPU LoRA ops or lorafleet's
(:mod:`lorafleet.engine.cpu_lora`, one matmul per adapter in the batch), ``--max-lora-rank``
at the default 64 or fitted to the adapter's rank, and the engine worker on one core (vLLM's
default on 2 cores: one is kept for the API server) or on both. Every request is a held-out
support message, greedy, ``ignore_eos`` with a fixed ``max_tokens`` so base and adapter produce
the same number of tokens. The base's tokens/s is also what a merged export of the adapter
runs at (same architecture and size). Default adapter: a random rank-16 LoRA on the attention
projections (what the example trains).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "cpu_lora_bench.json"
PROMPTS = ROOT / "examples" / "support-intents" / "eval.jsonl"

# name -> (lorafleet ops, max_lora_rank (None: the adapter's rank), extra engine environment)
SETTINGS: dict[str, tuple[bool, int | None, dict[str, str]]] = {
    "vllm-ops rank64": (False, 64, {}),
    "vllm-ops rank-fit": (False, None, {}),
    "lorafleet-ops rank64": (True, 64, {}),
    "lorafleet-ops rank-fit": (True, None, {}),
    "lorafleet-ops rank-fit 2 cores": (True, None, {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                                                     "VLLM_CPU_OMP_THREADS_BIND": "0-1"}),
}


def _prompts() -> list[list[dict]]:
    rows = [json.loads(line) for line in PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["messages"][:-1] for r in rows]


def measure(url: str, model: str, streams: int, requests: int, max_tokens: int, prompts: list) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)

    def one(i: int) -> int:
        r = client.chat.completions.create(model=model, messages=prompts[i % len(prompts)], temperature=0,
                                           max_tokens=max_tokens, extra_body={"ignore_eos": True})
        return r.usage.completion_tokens

    one(0)  # warm-up (the adapter's first use loads it into a slot)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=streams) as pool:
        tokens = sum(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "wall_s": round(wall, 2), "tok_s": round(tokens / wall, 1)}


def run_setting(name: str, adapter: Path, rank: int, levels: list[int], max_tokens: int) -> list[dict]:
    import httpx

    from lorafleet.core.settings import get_settings
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    ops, max_rank, env = SETTINGS[name]
    settings = get_settings()
    base = settings.default_base
    log = settings.layout.logs / f"cpu-lora-bench-{name.replace(' ', '_')}.log"
    cfg = EngineConfig.from_settings(settings, settings.layout.base(base), base, log_path=log, max_loras=1,
                                     max_lora_rank=max_rank or rank, cpu_lora_ops=ops, extra_env=env)
    prompts = _prompts()
    rows = []
    with LocalEngine(cfg) as engine:
        httpx.post(f"{engine.root_url}/v1/load_lora_adapter", json={"lora_name": "adapter", "lora_path": str(adapter)},
                   timeout=120).raise_for_status()
        for streams in levels:
            requests = max(8, 2 * streams)
            b = measure(engine.url, base, streams, requests, max_tokens, prompts)
            a = measure(engine.url, "adapter", streams, requests, max_tokens, prompts)
            rows.append({"setting": name, "streams": streams, "requests": requests, "base_tok_s": b["tok_s"],
                         "adapter_tok_s": a["tok_s"], "ratio": round(a["tok_s"] / b["tok_s"], 3)})
            print(f"  {name:<32} streams {streams:>3}: base {b['tok_s']:>7} tok/s, adapter {a['tok_s']:>7} tok/s "
                  f"({rows[-1]['ratio']:.2f}x)", flush=True)
    return rows


def plot(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name in dict.fromkeys(r["setting"] for r in rows):
        pts = [r for r in rows if r["setting"] == name]
        axes[0].plot([r["streams"] for r in pts], [r["adapter_tok_s"] for r in pts], marker="o", label=name)
        axes[1].plot([r["streams"] for r in pts], [r["ratio"] for r in pts], marker="o", label=name)
    base = [r for r in rows if r["setting"] == rows[0]["setting"]]
    axes[0].plot([r["streams"] for r in base], [r["base_tok_s"] for r in base], "k--", label="base (= merged export)")
    axes[0].set(xscale="log", xlabel="streams", ylabel="output tokens/s", title="adapter tokens/s")
    axes[1].axhline(0.6, color="grey", ls="--", lw=0.8)
    axes[1].set(xscale="log", xlabel="streams", ylabel="adapter / base", title="adapter / base tokens/s", ylim=(0, 1.1))
    axes[0].legend(fontsize=7)
    fig.suptitle("vLLM CPU engine, SmolLM2-135M: the cost of a LoRA adapter per setting")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    return out.with_suffix(".png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, help="peft adapter folder (default: a random rank-16 attention LoRA)")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), help=f"subset of: {', '.join(SETTINGS)}")
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 8, 32])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="8 streams only, two settings")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.levels, args.settings = [8], ["vllm-ops rank64", "lorafleet-ops rank-fit"]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {list(SETTINGS)}")

    from lorafleet.core.settings import get_settings

    settings = get_settings()
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.adapter
        if adapter is None:
            sys.path.insert(0, str(ROOT))
            from tests.tiny import make_random_lora

            adapter = make_random_lora(settings.layout.base(settings.default_base), Path(tmp) / "lora", r=16,
                                       scale=0.05)
        rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
        rows: list[dict] = []
        for name in args.settings:
            rows += run_setting(name, adapter.resolve(), rank, args.levels, args.max_tokens)
    print_table(f"CPU LoRA cost, rank-{rank} adapter, {args.max_tokens} tokens per request",
                ["setting", "streams", "base tok/s", "adapter tok/s", "adapter/base"],
                [[r["setting"], r["streams"], r["base_tok_s"], r["adapter_tok_s"], f"{r['ratio']:.2f}x"] for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"adapter_rank": rank, "max_tokens": args.max_tokens, "rows": rows}, indent=1))
    print(f"wrote {args.out} and {plot(rows, args.out)}")


if __name__ == "__main__":
    main()
