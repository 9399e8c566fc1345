"""Many-adapter benchmark: 1,000 adapter versions under skewed traffic, through one gateway over
two engines that share nothing (each its own home; adapters come from an S3 registry).

Setup: a moto S3 server; 1,000 random rank-8 LoRAs (q_proj, v_proj) on the tiny base, each its
own logical model ``cust-NNNN`` whose route's stable version is ``cust-NNNN@1`` (one routes
document). Two `platform engine` processes (vLLM with lorafleet's registry resolver, each on its
own core) and one `platform serve` gateway in ``engine`` loading mode, as the fleet runs.

Traffic: ``--streams`` concurrent streamed chat completions (16 tokens, ``ignore_eos``), every
request its own ``user``; the model of each request is drawn:

- ``single``: every request names cust-0000 (the one-adapter baseline);
- ``zipf``: Zipf(1.1) popularity over the 1,000 (rank k drawn with probability ~ k^-1.1);
- ``uniform``: all 1,000 equally;
- ``fits`` / ``2x``: uniform over half / twice the fleet's adapter slots (2 engines x
  max_cpu_loras): the no-cliff check compares these two.

Per scenario: throughput (requests/s, tokens/s, and relative to ``single``), failed requests, the
gateway's adapter cache per engine (hits, misses, unloads; lorafleet_adapter_cache_total), and
adapter loads: the load itself from the gateway's "loaded ... in N ms" log lines (p50/p95/max:
S3 fetch + sha256 + vLLM load), the fetch alone from the engines' "resolved ... in N ms" lines,
and what requests waited for it (the lorafleet_adapter_load_duration_seconds histogram, p95
interpolated as histogram_quantile does).

The sweep: vLLM's ``--max-loras`` / ``--max-cpu-loras`` (``LORAFLEET_ENGINE_MAX_LORAS`` /
``LORAFLEET_ENGINE_MAX_CPU_LORAS``; the second is also the gateway's ``max_loaded_adapters``).
Engines restart for each setting. Prints the tables; writes benchmarks/out/adapters_bench.json/.png.

    .venv/bin/python benchmarks/adapters_bench.py [--adapters 1000] [--requests 1200]
        [--settings 4:16,16:64,32:256] [--smollm 100]

``--smollm N`` adds one run on the real SmolLM2-135M base with N adapters (default settings,
zipf and single only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, pct, print_table  # noqa: E402
from benchmarks.loadgen import load  # noqa: E402
from lorafleet.core.settings import DEFAULT_BASE  # noqa: E402
from lorafleet.platform.control.observe import cache_figures, scrape  # noqa: E402
from lorafleet.registry.bases import BaseStore  # noqa: E402
from lorafleet.registry.storage import S3Storage  # noqa: E402
from lorafleet.registry.store import Registry  # noqa: E402
from tests.fleet_harness import BUCKET, PREFIX, Fleet  # noqa: E402
from tests.registry_backends import moto_s3  # noqa: E402
from tests.tiny import build_tiny_llama, make_random_lora  # noqa: E402

ZIPF_S = 1.1
LOADED_RE = re.compile(r"loaded (\S+) on (\S+) in (\d+) ms")
RESOLVED_RE = re.compile(r"resolved (\S+) from the registry into \S+ in (\d+) ms")  # the engine's log
ENGINES = ("engine-0", "engine-1")


# -- adapters -------------------------------------------------------------------------------
def _variants(template: Path, dest: Path, count: int) -> list[Path]:
    """``count`` adapters shaped like ``template``, each with its own random weights (one HF model
    load for the template; the rest are safetensors written directly, seconds for 1,000)."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(template / "adapter_model.safetensors")
    out = []
    for i in range(count):
        folder = dest / f"a{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(1000 + i)
        save_file({k: torch.randn(v.shape, generator=g, dtype=v.dtype) * v.float().std().item()
                   for k, v in tensors.items()}, folder / "adapter_model.safetensors")
        shutil.copy(template / "adapter_config.json", folder / "adapter_config.json")
        out.append(folder)
    return out


def push_adapters(fleet: Fleet, count: int) -> list[str]:
    """Push ``count`` versions, one logical model each, and apply one routes document naming them all."""
    pusher = fleet.settings("pusher")
    base_dir = pusher.layout.base(fleet.base)
    manifest = BaseStore(pusher.layout.bases).get(fleet.base)
    src = fleet.home("pusher") / "adapters"
    template = make_random_lora(base_dir, src / "template", r=8, target_modules=("q_proj", "v_proj"))
    folders = _variants(template, src, count)
    started = time.perf_counter()

    def push(i: int) -> str:
        registry = Registry(S3Storage(BUCKET, PREFIX, fleet.endpoint), pusher.layout.cache / f"t{i % 8}")
        return registry.push(folders[i], f"cust-{i:04d}", manifest).ref

    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(push, range(count)))
    print(f"  pushed {count} versions to S3 in {time.perf_counter() - started:.0f} s", flush=True)
    routes = fleet.home("pusher") / "routes.yaml"
    routes.write_text("routes:\n" + "".join(f"  {r.partition('@')[0]}: {{stable: {r}}}\n" for r in refs))
    done = fleet.platform("pusher", "routes", "apply", str(routes), timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"routes apply: {done.stderr}")
    return [r.partition("@")[0] for r in refs]


# -- traffic --------------------------------------------------------------------------------
def zipf_sequence(names: list[str], n: int, s: float, seed: int) -> list[str]:
    weights = [1.0 / (k ** s) for k in range(1, len(names) + 1)]
    return random.Random(seed).choices(names, weights=weights, k=n)


def uniform_sequence(names: list[str], n: int, seed: int) -> list[str]:
    return random.Random(seed).choices(names, k=n)


def _histogram(s, name: str) -> dict[float, float]:
    return {float(labels["le"]): value for n, labels, value in s.samples if n == f"{name}_bucket"}


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over (before, after]: linear within the bucket."""
    buckets = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def run_scenario(fleet: Fleet, gateway: str, label: str, models: list[str], streams: int) -> dict:
    before = scrape(gateway)
    log_from = {name: len(fleet.log(name)) for name in ("gateway", *ENGINES)}
    res = asyncio.run(load(f"{gateway}/v1", models, streams, len(models), stagger_s=1.0, headers=fleet.auth,
                           distinct_users=True))
    after = scrape(gateway)
    loads = [int(m.group(3)) for m in LOADED_RE.finditer(fleet.log("gateway")[log_from["gateway"]:])]
    resolves = [int(m.group(2)) for e in ENGINES for m in RESOLVED_RE.finditer(fleet.log(e)[log_from[e]:])]
    name = "lorafleet_adapter_load_duration_seconds"
    hb, ha = _histogram(before, name), _histogram(after, name)
    cache = cache_figures(after, before)
    row = {"scenario": label, "requests": res["requests"], "failed": res["failures"], "req_s": res["req_s"],
           "tok_s": res["tok_s"], "p50_ms": res["p50_ms"], "p95_ms": res["p95_ms"],
           "distinct": len(set(models)), "loads": len(loads),
           "load_p50_ms": pct(loads, 50), "load_p95_ms": pct(loads, 95), "load_max_ms": max(loads, default=math.nan),
           "resolve_p95_ms": pct(resolves, 95),
           "wait_p95_ms": histogram_quantile(0.95, hb, ha) * 1e3,
           "engines": [{"engine": c.engine, "hits": c.hits, "misses": c.misses, "unloads": c.unloads,
                        "hit_rate": c.hit_rate, "loaded": c.loaded, "slots": c.slots} for c in cache]}
    hits = sum(c.hits for c in cache)
    total = sum(c.requests for c in cache)
    row["hit_rate"] = hits / total if total else math.nan
    per_engine = ", ".join(f"{c.engine.rsplit(':', 1)[-1]} {c.hit_rate or 0:.0%}" for c in cache)
    print(f"    {label}: {row['req_s']:.1f} req/s, {row['failed']} failed, {len(loads)} loads "
          f"(p95 {row['load_p95_ms']:.0f} ms), hit rate {row['hit_rate']:.0%} ({per_engine})", flush=True)
    return row


def run_setting(fleet: Fleet, names: list[str], max_loras: int, max_cpu_loras: int, requests: int, streams: int,
                scenarios: list[str], passes: int) -> dict:
    fleet.extra_env.update(LORAFLEET_ENGINE_MAX_LORAS=str(max_loras), LORAFLEET_ENGINE_MAX_CPU_LORAS=str(max_cpu_loras))
    engines = [fleet.start_engine(f"engine-{i}") for i in (0, 1)]
    try:
        for i, url in enumerate(engines):
            fleet.wait(f"{url}/health", f"engine-{i}")
        gateway = fleet.start_gateway("gateway", engines)
        fleet.wait(f"{gateway}/readyz", "gateway", 60)
        slots = 2 * max_cpu_loras
        draws = {
            "single": lambda seed: [names[0]] * requests,
            "zipf": lambda seed: zipf_sequence(names, requests, ZIPF_S, seed=seed),
            "uniform": lambda seed: uniform_sequence(names, requests, seed=seed),
            "fits": lambda seed: uniform_sequence(names[:max(1, slots // 2)], requests, seed=seed),
            "2x": lambda seed: uniform_sequence(names[:min(len(names), 2 * slots)], requests, seed=seed),
        }
        print(f"  max_loras={max_loras} max_cpu_loras={max_cpu_loras} ({slots} slots over 2 engines)", flush=True)
        run_scenario(fleet, gateway, "warm-up", [names[0]] * streams, streams)
        rows = []
        for i, s in enumerate(scenarios):
            # pass 1 meets the caches as the previous scenario left them (most first requests of a
            # version are misses no cache can save); the last pass is the steady state the targets read
            for p in range(1 if s == "single" else passes):
                label = s if p == passes - 1 or s == "single" else f"{s} pass {p + 1}"
                rows.append(run_scenario(fleet, gateway, label, draws[s](100 * i + p), streams))
    finally:
        fleet.stop_all()
        for name in ("engine-0", "engine-1", "gateway"):
            log = fleet.home(name) / "process.log"
            if log.exists():
                log.rename(log.with_name(f"process-{max_loras}-{max_cpu_loras}.log"))
    single = next((r for r in rows if r["scenario"] == "single"), None)
    for r in rows:
        r["relative"] = r["req_s"] / single["req_s"] if single else math.nan
    fits, twice = (next((r for r in rows if r["scenario"] == s), None) for s in ("fits", "2x"))
    return {"max_loras": max_loras, "max_cpu_loras": max_cpu_loras, "rows": rows,
            "cliff_ratio": fits["req_s"] / twice["req_s"] if fits and twice and twice["req_s"] else math.nan}


def bench(root: Path, base: str, adapters: int, settings: list[tuple[int, int]], requests: int, streams: int,
          scenarios: list[str], passes: int) -> list[dict]:
    with moto_s3(BUCKET) as endpoint:
        tiny = build_tiny_llama(root / "tiny-src") if base != DEFAULT_BASE else None
        fleet = Fleet(root / base, endpoint, tiny, base=base)
        for name in ("pusher", "engine-0", "engine-1", "gateway"):
            fleet.pull_base(name)
        names = push_adapters(fleet, adapters)
        return [run_setting(fleet, names, ml, mc, requests, streams, scenarios, passes) for ml, mc in settings]


# -- report ---------------------------------------------------------------------------------
def report(title: str, runs: list[dict]) -> None:
    header = ["max_loras", "cpu_loras", "scenario", "distinct", "req/s", "x single", "failed", "hit rate", "loads",
              "load p50 ms", "load p95 ms", "load max ms", "fetch p95 ms", "wait p95 ms", "p95 ms"]
    rows = [[run["max_loras"], run["max_cpu_loras"], r["scenario"], r["distinct"], r["req_s"], r["relative"],
             r["failed"], r["hit_rate"], r["loads"], r["load_p50_ms"], r["load_p95_ms"], r["load_max_ms"],
             r.get("resolve_p95_ms", math.nan), r["wait_p95_ms"], r["p95_ms"]] for run in runs for r in run["rows"]]
    print_table(title, header, rows)
    for run in runs:
        if not math.isnan(run["cliff_ratio"]):
            print(f"  max_cpu_loras={run['max_cpu_loras']}: fits / 2x the slots = {run['cliff_ratio']:.2f}x "
                  "throughput (target: at most 2x)")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(k, runs) for k, runs in result.items() if runs]
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4 * len(groups)), squeeze=False)
    for (title, runs), (ax_t, ax_h) in zip(groups, axes, strict=True):
        scenarios = [r["scenario"] for r in runs[0]["rows"]]
        width = 0.8 / len(runs)
        for j, run in enumerate(runs):
            label = f"max_loras {run['max_loras']} / cpu {run['max_cpu_loras']}"
            xs = [i + j * width for i in range(len(scenarios))]
            ax_t.bar(xs, [r["relative"] for r in run["rows"]], width, label=label)
            ax_h.bar(xs, [r["hit_rate"] for r in run["rows"]], width, label=label)
        for ax in (ax_t, ax_h):
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(scenarios))], scenarios)
            ax.legend(fontsize=7)
        ax_t.axhline(0.7, color="red", lw=1, ls=":")
        ax_t.set(ylabel="throughput / single-adapter", title=f"{title}: throughput (target 0.7x for zipf)")
        ax_h.set(ylabel="adapter cache hit rate", ylim=(0, 1.05), title=f"{title}: gateway-seen cache hit rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1200, help="per scenario")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--settings", default="4:16,16:64,32:256", help="max_loras:max_cpu_loras, comma-separated")
    parser.add_argument("--scenarios", default="single,zipf,uniform,fits,2x")
    parser.add_argument("--passes", type=int, default=2, help="passes per scenario (the last is reported as steady)")
    parser.add_argument("--smollm", type=int, default=0, help="also N adapters on SmolLM2-135M (0: skip)")
    args = parser.parse_args()
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings.split(",")]
    scenarios = args.scenarios.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="adapters-bench-") as tmp:
        title = f"{args.adapters} adapters, tiny base, {args.streams} streams, 2 engines"
        print(title, flush=True)
        result[title] = bench(Path(tmp), "tiny-llama", args.adapters, settings, args.requests, args.streams, scenarios,
                               args.passes)
        report(title, result[title])
        if args.smollm:
            title = f"{args.smollm} adapters, SmolLM2-135M, {args.streams} streams, 2 engines"
            print(title, flush=True)
            result[title] = bench(Path(tmp), DEFAULT_BASE, args.smollm, [settings[0]], max(200, args.requests // 4),
                                  args.streams, ["single", "zipf"], args.passes)
            report(title, result[title])
    summary = {k: [{**run, "rows": [{**r} for r in run["rows"]]} for run in runs] for k, runs in result.items()}
    (OUT / "adapters_bench.json").write_text(json.dumps(summary, indent=2, default=str))
    plot(result, OUT / "adapters_bench.png")
    print(f"\nwrote {OUT / 'adapters_bench.json'} and {OUT / 'adapters_bench.png'}")


if __name__ == "__main__":
    main()
