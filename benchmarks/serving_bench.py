"""Gateway overhead and multi-adapter throughput, printed and plotted (never pass/fail).

Measures, on the tiny random Llama (so the engine is not the only thing that counts):
  1. added latency (p50/p95) and throughput of gateway vs direct, against a real vLLM
     engine and against a stub upstream, at 1/8/32/128 streams: a stub that answers at
     once (the gateway's cost alone, its CPU time per request and its capacity) and one
     paced like an engine (token k due k x 20 ms after the request arrived: the latency
     the gateway adds at that load; the paced streams start staggered over one request's
     length, so that streams of equal length do not stay in step and arrive in bursts);
  2. throughput with 1, 4 and 16 distinct adapter versions in the mix;
  3. time from a routes-file change to the first token from a never-loaded version.
Targets (issue 5): >= 0.9x direct throughput; <= 2 ms added p50 vs the stub; the
16-adapter mix >= 0.8x the single-adapter throughput.

Every part runs in its own process, as in a deployment: this script is only the load
generator (aiohttp, one event loop); the gateways are `lorafleet.serving.server` processes
(what `platform serve --engine-url` runs); the stub is this script with ``--stub PORT``; vLLM
is its usual three processes, stopped before the stub runs. On a 2-core machine the load
generator, the stub and the gateway still share the cores: against the instant stub a
closed loop of N streams runs as fast as one gateway process can relay, so from 32 streams
on its added p50 is a queue (about N x the gateway's CPU per request / 2 cores), not a delay.

Run: .venv/bin/python benchmarks/serving_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table  # noqa: E402

from benchmarks.loadgen import MSG, abba, load  # noqa: E402
from benchmarks.procs import Proc, gateway_process  # noqa: E402
from benchmarks.serving_plot import plot  # noqa: E402
from benchmarks.stub_engine import PACED_MS, TOKENS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, concurrency up to 32")
    parser.add_argument("--levels", type=lambda v: [int(x) for x in v.split(",")],
                        help="concurrency levels (default 1,8,32,128; --quick 1,8,32)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lorafleet-bench-"))
    os.environ["LORAFLEET_HOME"] = str(home)

    from lorafleet.core.settings import get_settings
    from lorafleet.platform.base_pull import pull_base
    from tests.tiny import build_tiny_llama
    from tests.tiny import make_random_lora as make_lora_adapter
    from lorafleet.registry import open_registry
    from lorafleet.engine import EngineConfig, LocalEngine, free_port
    from lorafleet.serving.routes import RoutesFile

    settings = get_settings()
    print(f"home {home}: building the tiny base and 16 adapter versions")
    base, _ = pull_base(settings, "tiny-llama", build_tiny_llama(home / "src-tiny"))
    reg = open_registry(settings)
    refs = [reg.push(make_lora_adapter(settings.layout.base("tiny-llama"), home / f"src-a{i}", r=8, seed=i),
                     f"adapter-{i}", base).ref for i in range(16)]
    routes_file = settings.layout.routes_file
    RoutesFile.from_mapping({"routes": {f"route-{i}": {"stable": refs[i]} for i in range(16)}}).save(routes_file)

    engine = LocalEngine(EngineConfig.from_settings(settings, settings.layout.base("tiny-llama"), "tiny-llama",
                                                    log_path=home / "engine.log", max_loras=16))
    procs: list[Proc] = []
    print("starting vLLM, the stub upstream and two gateways (each its own process) ...")
    engine.start()
    try:
        gw = gateway_process("gateway", home, "tiny-llama", engine.root_url, free_port())
        procs.append(gw)
        stub_port = free_port()
        stub = Proc("stub", [sys.executable, str(Path(__file__).with_name("stub_engine.py")), str(stub_port)], f"http://127.0.0.1:{stub_port}",
                    "/health", dict(os.environ), home / "stub.log")
        procs.append(stub)
        stub_home = home / "stub-home"
        stub_home.mkdir()
        stub_gw = gateway_process("stub-gateway", stub_home, "stub", stub.url, free_port())
        procs.append(stub_gw)
        levels = args.levels or ([1, 8, 32] if args.quick else [1, 8, 32, 128])
        rows, mix_rows, first = measure_engine(args.quick, levels, engine, gw, reg, settings, base, routes_file,
                                               make_lora_adapter)
        if engine.proc is not None and engine.proc.poll() is not None:
            print(f"the engine exited early (code {engine.proc.returncode}); see {home / 'engine.log'}")
        engine.stop()  # the stub runs have the machine to themselves
        print("vLLM stopped; the gateway against the stub:", flush=True)
        stub_rows, paced_rows = measure_stub(args.quick, levels, stub, stub_gw)
    finally:
        for proc in procs:
            proc.stop()
        engine.stop()
    plot(rows, stub_rows, paced_rows, mix_rows, first)


def measure_engine(quick, levels, engine, gw, reg, settings, base, routes_file, make_lora_adapter):
    """Gateway vs direct to vLLM, the adapter mix, and a routes change to a never-loaded version."""
    from lorafleet.serving.routes import RoutesFile

    gw_url, direct_url = f"{gw.url}/v1", engine.url
    rows = []
    asyncio.run(load(gw_url, ["route-0"], 4, 8))  # load route-0 and warm up
    for c in levels:
        n = max(2 * c, 16) if quick else min(max(8 * c, 64), 512)  # the engine's speed drifts: a larger sample
        print(f"  {c} streams: 2 x {n} requests direct to vLLM and through the gateway (A-B-B-A) ...", flush=True)
        direct, via = abba(lambda: asyncio.run(load(direct_url, ["tiny-llama"], c, n)),
                           lambda: asyncio.run(load(gw_url, ["tiny-llama"], c, n)))
        rows.append([c, direct["tok_s"], via["tok_s"], via["tok_s"] / direct["tok_s"],
                     via["p50_ms"] - direct["p50_ms"], via["p95_ms"] - direct["p95_ms"],
                     direct["failures"] + via["failures"]])
    print_table("gateway vs direct to vLLM (tiny model, 16 streamed tokens per request)",
                ["streams", "direct tok/s", "gateway tok/s", "ratio", "+p50 ms", "+p95 ms", "failures"], rows)

    mix_rows = []
    for k in (1, 4, 16):
        models = [f"route-{i}" for i in range(k)]
        # steady state: every adapter of the mix loaded first (cold loads are measured below)
        asyncio.run(load(gw_url, models, k, 2 * k))
        r = asyncio.run(load(gw_url, models, 16, 64 if quick else 128))
        mix_rows.append([k, r["tok_s"], r["p50_ms"], r["failures"]])
    for row in mix_rows:
        row.insert(2, row[1] / mix_rows[0][1])
    print_table("adapter mix through the gateway (16 streams)",
                ["adapters", "tok/s", "vs 1 adapter", "p50 ms", "failures"], mix_rows)

    new = reg.push(make_lora_adapter(settings.layout.base("tiny-llama"), routes_file.parent / "src-new", r=8,
                                     seed=99), "fresh", base).ref
    data = RoutesFile.load(routes_file)
    data.routes["fresh"] = RoutesFile.from_mapping({"routes": {"fresh": {"stable": new}}}).routes["fresh"]
    t0 = time.perf_counter()
    data.save(routes_file)
    first = None
    with httpx.Client(timeout=60) as client:
        while first is None:
            with client.stream("POST", f"{gw_url}/chat/completions", json={
                    "model": "fresh", "messages": MSG, "max_tokens": 4, "stream": True}) as r:
                if r.status_code == 200:
                    for line in r.iter_lines():
                        if line.startswith("data: {"):
                            first = time.perf_counter() - t0
                            break
                else:
                    time.sleep(0.02)
    print(f"\nroutes change -> first token from a never-loaded version: {first * 1e3:.0f} ms")
    return rows, mix_rows, first


def measure_stub(quick, levels, stub, stub_gw):
    """Gateway vs the stub, instant (the gateway's CPU cost and capacity) and paced like an engine."""
    stub_url, stub_gw_url = f"{stub.url}/v1", f"{stub_gw.url}/v1"
    stub_rows, paced_rows = [], []
    asyncio.run(load(stub_gw_url, ["stub"], 4, 32))
    for c in levels:
        n = max(8 * c, 256) if quick else max(32 * c, 1024)  # at 2,000+ requests/s, a short run is noise
        n_paced = max(2 * c, 16) if quick else max(8 * c, 32)  # each paced request is a 320 ms sample
        print(f"  {c} streams: 2 x {n} requests with the instant stub, 2 x {n_paced} with the paced one, "
              "direct and through the gateway (A-B-B-A) ...", flush=True)
        cpu0 = stub_gw.cpu_s()
        s_direct, s_via = abba(lambda: asyncio.run(load(stub_url, ["stub"], c, n)),
                               lambda: asyncio.run(load(stub_gw_url, ["stub"], c, n)))
        cpu_ms = (stub_gw.cpu_s() - cpu0) * 1e3 / max(1, s_via["requests"])
        paced = {"requests": n_paced, "stagger_s": TOKENS * PACED_MS / 1e3, "stub_delay_ms": PACED_MS}
        p_direct, p_via = abba(lambda: asyncio.run(load(stub_url, ["stub"], c, **paced)),
                               lambda: asyncio.run(load(stub_gw_url, ["stub"], c, **paced)))
        stub_rows.append([c, s_direct["p50_ms"], s_via["p50_ms"], s_via["p50_ms"] - s_direct["p50_ms"],
                          s_via["p95_ms"] - s_direct["p95_ms"], s_direct["req_s"], s_via["req_s"], cpu_ms,
                          s_direct["failures"] + s_via["failures"]])
        paced_rows.append([c, p_direct["p50_ms"], p_via["p50_ms"], p_via["p50_ms"] - p_direct["p50_ms"],
                           p_via["p95_ms"] - p_direct["p95_ms"], p_via["req_s"],
                           p_direct["failures"] + p_via["failures"]])
    print_table("gateway vs an instant stub upstream (its cost alone)",
                ["streams", "stub p50 ms", "via p50 ms", "+p50 ms", "+p95 ms", "stub req/s", "via req/s",
                 "gw CPU ms/req", "failures"], stub_rows)
    print_table(f"gateway vs a stub paced like an engine ({PACED_MS:g} ms per token, {TOKENS} tokens)",
                ["streams", "stub p50 ms", "via p50 ms", "+p50 ms", "+p95 ms", "via req/s", "failures"],
                paced_rows)
    return stub_rows, paced_rows


if __name__ == "__main__":
    main()
