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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, pct, print_table  # noqa: E402
from lorafleet.engine.process import answers_ok  # noqa: E402

TOKENS = 16
MSG = [{"role": "user", "content": "Tell me about the sea."}]


# -- a stub upstream that streams TOKENS chunks, at once or paced -----------------------------
PACED_MS = 20.0  # per token, as an engine decoding 50 tokens/s per stream


async def stub_app(scope, receive, send) -> None:
    """Streams TOKENS chunks; with ``stub_delay_ms`` in the request body, chunk k is due k times
    that after the request arrived (a late wake-up is not carried over to the next chunk)."""
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/health" or scope["path"] == "/v1/models":
        body = b'{"data": [{"id": "stub", "parent": null}]}'
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    chunk = {"id": "x", "object": "chat.completion.chunk", "model": "stub",
             "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    line = f"data: {json.dumps(chunk)}\n\n".encode()
    delay_s = float(json.loads(raw or b"{}").get("stub_delay_ms", 0)) / 1e3
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(1, TOKENS + 1):
        if delay_s:
            await asyncio.sleep(max(0.0, start + k * delay_s - loop.time()))
        await send({"type": "http.response.body", "body": line, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def run_stub(port: int) -> None:
    import uvicorn

    uvicorn.run(stub_app, host="127.0.0.1", port=port, log_level="error", access_log=False)


# -- processes -------------------------------------------------------------------------------
class Proc:
    """A server process of the benchmark in its own session (stopped with its whole group)."""

    def __init__(self, name: str, cmd: list[str], url: str, ready_path: str, env: dict, log: Path) -> None:
        self.name, self.url, self.log = name, url, log
        self.popen = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise SystemExit(f"{name} exited with {self.popen.returncode}; see {log}")
            if answers_ok(f"{url}{ready_path}", timeout_s=2):
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} not ready in 120 s; see {log}")

    def cpu_s(self) -> float:
        import psutil

        t = psutil.Process(self.popen.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        from lorafleet.engine.process import end_process_group

        if self.popen.poll() is None:
            end_process_group(self.popen.pid)


def gateway_process(name: str, home: Path, base: str, engine_url: str, port: int) -> Proc:
    env = {**os.environ, "LORAFLEET_HOME": str(home)}
    cmd = [sys.executable, "-m", "lorafleet.serving.server", "--base", base, "--port", str(port),
           "--engine-url", engine_url]
    return Proc(name, cmd, f"http://127.0.0.1:{port}", "/readyz", env, home / f"{name}.log")


# -- load ----------------------------------------------------------------------------------
async def load(url: str, models: list[str], concurrency: int, requests: int, stagger_s: float = 0.0,
               **extra) -> dict:
    """``requests`` streamed chat completions, ``concurrency`` at a time; latency to the last byte.

    ``stagger_s`` spreads the streams' first requests over that long: streams of equal length
    that all start together stay in step, and each wave then arrives as one burst.
    """
    import aiohttp

    latencies: list[float] = []
    tokens = failures = 0
    todo = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def worker(k: int) -> None:
            nonlocal tokens, failures
            await asyncio.sleep(stagger_s * k / concurrency)
            for i in todo:
                body = {"model": models[i % len(models)], "messages": MSG, "max_tokens": TOKENS, "stream": True,
                        "ignore_eos": True, "temperature": 0, **extra}
                t0 = time.perf_counter()
                async with session.post(f"{url}/chat/completions", json=body) as r:
                    if r.status != 200:
                        failures += 1
                        print(f"    failed: HTTP {r.status} from {url}: {(await r.read())[:300]!r}", flush=True)
                        continue
                    async for line in r.content:
                        if line.startswith(b"data: {"):
                            tokens += 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    return summary(latencies, tokens, wall, failures)


def summary(latencies: list[float], tokens: int, wall: float, failures: int) -> dict:
    return {"p50_ms": pct(latencies, 50) * 1e3, "p95_ms": pct(latencies, 95) * 1e3,
            "tok_s": tokens / wall, "req_s": len(latencies) / wall, "failures": failures,
            "requests": len(latencies) + failures, "latencies": latencies, "tokens": tokens, "wall": wall}


def abba(run_a, run_b) -> tuple[dict, dict]:
    """Run A, B, B, A and pool each side's requests, so a drift in the engine's speed over the
    run (it has a warm-up, and the machine is shared) weighs on both sides alike."""
    a1, b1, b2, a2 = run_a(), run_b(), run_b(), run_a()
    return tuple(summary(x["latencies"] + y["latencies"], x["tokens"] + y["tokens"], x["wall"] + y["wall"],
                         x["failures"] + y["failures"]) for x, y in ((a1, a2), (b1, b2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, concurrency up to 32")
    parser.add_argument("--levels", type=lambda v: [int(x) for x in v.split(",")],
                        help="concurrency levels (default 1,8,32,128; --quick 1,8,32)")
    parser.add_argument("--stub", type=int, metavar="PORT", help=argparse.SUPPRESS)  # run the stub upstream
    args = parser.parse_args()
    if args.stub:
        return run_stub(args.stub)
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
        stub = Proc("stub", [sys.executable, __file__, "--stub", str(stub_port)], f"http://127.0.0.1:{stub_port}",
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


if __name__ == "__main__":
    main()
