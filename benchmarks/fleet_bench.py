"""Fleet benchmark: how fast a change reaches every gateway, and how fast an engine fetches,
verifies and loads an adapter from S3.

1. promote -> first answer: an S3 registry (moto, loopback), one engine, two gateways, each its own
   home. 20 times: `platform promote name@N --canary 100%` from another home (the CLI process
   included), then each gateway asked every 50 ms until it answers from name@N. Reported: p50/p95
   of the slower gateway. Target: p95 under 3 s.
2. fetch + verify + load by adapter size: the real SmolLM2-135M base in a `platform engine`
   (vLLM with lorafleet's resolver); random LoRAs of rank 1, 8 and 64 on all seven projections
   (about 1.2, 9.8 and 78 MB in fp32). The first request naming a version makes the engine fetch it
   from S3, check every file's sha256 and load it; the time over a second (warm) request is the
   fetch + verify + load time. Target: under 1 s for the ~10 MB adapter.

Prints both tables and writes benchmarks/out/fleet_bench.png and .json.

    .venv/bin/python benchmarks/fleet_bench.py [--promotes 20] [--skip-sizes]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks.common import OUT, pct, print_table  # noqa: E402
from lorafleet.core.settings import DEFAULT_BASE  # noqa: E402
from lorafleet.registry.bases import BaseStore  # noqa: E402
from lorafleet.registry.storage import S3Storage  # noqa: E402
from lorafleet.registry.store import Registry  # noqa: E402
from tests.fleet_harness import BUCKET, ENGINE_KEY, PREFIX, Fleet  # noqa: E402
from tests.registry_backends import moto_s3  # noqa: E402
from tests.tiny import build_tiny_llama, make_random_lora  # noqa: E402

ALL_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _push(fleet: Fleet, name: str, count: int, rank: int = 8, modules=("q_proj", "v_proj")) -> list[str]:
    pusher = fleet.settings("pusher")
    base_dir = pusher.layout.base(fleet.base)
    manifest = BaseStore(pusher.layout.bases).get(fleet.base)
    registry = Registry(S3Storage(BUCKET, PREFIX, fleet.endpoint), pusher.layout.cache)
    src = fleet.home("pusher") / "adapters"
    return [registry.push(make_random_lora(base_dir, src / f"{name}-{i}", r=rank, seed=i, target_modules=modules),
                          name, manifest).ref for i in range(count)]


def _answer_version(gateway: str, model: str, auth: dict[str, str]) -> str | None:
    try:
        r = httpx.post(f"{gateway}/v1/completions", timeout=30, headers=auth,
                       json={"model": model, "prompt": "hi", "max_tokens": 1, "user": uuid.uuid4().hex})
    except httpx.HTTPError:
        return None
    return r.headers.get("x-lorafleet-version") if r.status_code == 200 else None


def promote_latency(root: Path, promotes: int) -> dict:
    with moto_s3(BUCKET) as endpoint:
        fleet = Fleet(root / "promote", endpoint, build_tiny_llama(root / "tiny-src"), base="tiny-llama")
        for name in ("pusher", "promoter", "engine-0", "gateway-0", "gateway-1"):
            fleet.pull_base(name)
        refs = _push(fleet, "bench-a", promotes + 1)
        routes = fleet.home("promoter") / "routes.yaml"
        routes.write_text(f"routes:\n  bench-a: {{stable: {refs[0]}}}\n")
        assert fleet.platform("promoter", "routes", "apply", str(routes)).returncode == 0
        engine = fleet.start_engine("engine-0")
        try:
            fleet.wait(f"{engine}/health", "engine-0")
            gateways = [fleet.start_gateway(f"gateway-{i}", [engine]) for i in (0, 1)]
            for i, g in enumerate(gateways):
                fleet.wait(f"{g}/readyz", f"gateway-{i}", 60)
            samples = []
            for i, ref in enumerate(refs[1:], 1):
                started = time.perf_counter()
                done = fleet.platform("promoter", "promote", ref, "--canary", "100%")
                cli_s = time.perf_counter() - started
                if done.returncode != 0:
                    raise RuntimeError(done.stderr)
                seen = {}
                while len(seen) < len(gateways) and time.perf_counter() - started < 60:
                    for g in gateways:
                        if g not in seen and _answer_version(g, "bench-a", fleet.auth) == ref:
                            seen[g] = time.perf_counter() - started
                    time.sleep(0.05)
                samples.append({"ref": ref, "cli_s": cli_s, "first_answer_s": max(seen.values(), default=60.0),
                                "per_gateway_s": list(seen.values())})
                print(f"  promote {i}/{promotes}: CLI {cli_s:.2f} s, first answer on every gateway "
                      f"{samples[-1]['first_answer_s']:.2f} s", flush=True)
        finally:
            fleet.stop_all()
    firsts = [s["first_answer_s"] for s in samples]
    clis = [s["cli_s"] for s in samples]
    return {"samples": samples, "p50_s": pct(firsts, 50), "p95_s": pct(firsts, 95),
            "cli_p50_s": pct(clis, 50), "cli_p95_s": pct(clis, 95)}


def fetch_load_by_size(root: Path) -> list[dict]:
    rows = []
    with moto_s3(BUCKET) as endpoint:
        fleet = Fleet(root / "sizes", endpoint, None, base=DEFAULT_BASE)
        fleet.extra_env["LORAFLEET_ENGINE_MAX_LORA_RANK"] = "64"
        for name in ("pusher", "engine-0"):
            fleet.pull_base(name)  # the built-in SmolLM2-135M, converted in each home
        refs = {rank: _push(fleet, f"size-r{rank}", 1, rank=rank, modules=ALL_MODULES)[0] for rank in (1, 8, 64)}
        sizes = {}
        for rank, ref in refs.items():
            name, _, n = ref.partition("@")
            src = fleet.home("pusher") / "adapters" / f"{name}-0" / "adapter_model.safetensors"
            sizes[rank] = src.stat().st_size / 1e6
        engine = fleet.start_engine("engine-0")
        try:
            fleet.wait(f"{engine}/health", "engine-0")
            headers = {"Authorization": f"Bearer {ENGINE_KEY}"}

            def ask(model: str) -> float:
                t = time.perf_counter()
                r = httpx.post(f"{engine}/v1/completions", headers=headers, timeout=300,
                               json={"model": model, "prompt": "hi", "max_tokens": 1})
                r.raise_for_status()
                return time.perf_counter() - t

            ask(DEFAULT_BASE)
            for rank, ref in refs.items():
                cold = ask(ref)
                warm = min(ask(ref) for _ in range(3))
                rows.append({"rank": rank, "size_mb": sizes[rank], "first_request_s": cold, "warm_request_s": warm,
                             "fetch_verify_load_s": cold - warm})
                print(f"  rank {rank}: {sizes[rank]:.1f} MB, fetch+verify+load {cold - warm:.3f} s", flush=True)
        finally:
            fleet.stop_all()
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    promote = result.get("promote")
    if promote:
        firsts = [s["first_answer_s"] for s in promote["samples"]]
        clis = [s["cli_s"] for s in promote["samples"]]
        axes[0].plot(range(1, len(firsts) + 1), firsts, "o-", label="first answer on every gateway")
        axes[0].plot(range(1, len(clis) + 1), clis, "s--", label="`platform promote` process")
        axes[0].axhline(3.0, color="red", lw=1, ls=":", label="target p95 3 s")
        axes[0].set(xlabel="promote #", ylabel="seconds from promote", title="promote -> first answer (2 gateways)")
        axes[0].legend(fontsize=8)
    sizes = result.get("sizes")
    if sizes:
        axes[1].bar([f"{r['size_mb']:.1f} MB\n(r={r['rank']})" for r in sizes],
                    [r["fetch_verify_load_s"] for r in sizes])
        axes[1].axhline(1.0, color="red", lw=1, ls=":", label="target 1 s (10 MB)")
        axes[1].set(ylabel="seconds", title="S3 fetch + sha256 verify + vLLM load (SmolLM2)")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--promotes", type=int, default=20)
    parser.add_argument("--skip-sizes", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        root = Path(tmp)
        print(f"promote -> first answer, {args.promotes} promotes", flush=True)
        result["promote"] = promote_latency(root, args.promotes)
        p = result["promote"]
        print_table("promote -> first answer from the new version on both gateways (s)",
                    ["p50", "p95", "CLI p50", "CLI p95"], [[p["p50_s"], p["p95_s"], p["cli_p50_s"], p["cli_p95_s"]]])
        if not args.skip_sizes:
            print("fetch + verify + load by size (SmolLM2-135M)", flush=True)
            result["sizes"] = fetch_load_by_size(root)
            print_table("adapter fetch from S3 + verify + load", ["rank", "MB", "first req s", "warm req s", "fetch+load s"],
                        [[r["rank"], r["size_mb"], r["first_request_s"], r["warm_request_s"], r["fetch_verify_load_s"]]
                         for r in result["sizes"]])
    (OUT / "fleet_bench.json").write_text(json.dumps(result, indent=2))
    plot(result, OUT / "fleet_bench.png")
    print(f"\nwrote {OUT / 'fleet_bench.json'} and {OUT / 'fleet_bench.png'}")


if __name__ == "__main__":
    main()
