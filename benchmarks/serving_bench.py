"""Gateway overhead and multi-adapter throughput, printed and plotted (never pass/fail).

Measures, on the tiny random Llama (so the engine is not the only thing that counts):
  1. added latency (p50/p95) and throughput of gateway vs direct, against a real vLLM
     engine and against a stub upstream that answers instantly, at 1/8/32/128 streams;
  2. throughput with 1, 4 and 16 distinct adapter versions in the mix;
  3. time from a routes-file change to the first token from a never-loaded version.
Targets (issue 5): >= 0.9x direct throughput; <= 2 ms added p50 vs the stub; the
16-adapter mix >= 0.8x the single-adapter throughput.

Run: .venv/bin/python benchmarks/serving_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, pct, print_table  # noqa: E402

TOKENS = 16
MSG = [{"role": "user", "content": "Tell me about the sea."}]


# -- a stub upstream that streams TOKENS chunks at once -------------------------------------
async def stub_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/health" or scope["path"] == "/v1/models":
        body = b'{"data": [{"id": "stub", "parent": null}]}'
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    chunk = {"id": "x", "object": "chat.completion.chunk", "model": "stub",
             "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    line = f"data: {json.dumps(chunk)}\n\n".encode()
    for _ in range(TOKENS):
        await send({"type": "http.response.body", "body": line, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def serve_in_thread(app, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


# -- load ----------------------------------------------------------------------------------
async def load(url: str, models: list[str], concurrency: int, requests: int) -> dict:
    latencies: list[float] = []
    tokens = 0
    failures = 0
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=None)) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            nonlocal tokens, failures
            body = {"model": models[i % len(models)], "messages": MSG, "max_tokens": TOKENS, "stream": True,
                    "ignore_eos": True, "temperature": 0}
            async with sem:
                t0 = time.perf_counter()
                async with client.stream("POST", f"{url}/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        failures += 1
                        await r.aread()
                        return
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            tokens += 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        wall = time.perf_counter() - t0
    return {"p50_ms": pct(latencies, 50) * 1e3, "p95_ms": pct(latencies, 95) * 1e3,
            "tok_s": tokens / wall, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, concurrency up to 32")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lorafleet-bench-"))
    os.environ["LORAFLEET_HOME"] = str(home)

    from lorafleet.core.settings import get_settings
    from lorafleet.platform.base_pull import pull_base
    from lorafleet.platform.tiny import build_tiny_llama
    from lorafleet.registry import open_registry
    from lorafleet.serving.engine import EngineConfig, LocalEngine, free_port
    from lorafleet.serving.gateway import Gateway, GatewayConfig, create_app
    from lorafleet.serving.routes import RoutesFile
    from lorafleet.serving.server import build_gateway
    from lorafleet.platform.tiny import make_random_lora as make_lora_adapter

    settings = get_settings()
    print(f"home {home}: building the tiny base and 16 adapter versions")
    base, _ = pull_base(settings, "tiny-llama", build_tiny_llama(home / "src-tiny"))
    reg = open_registry(settings)
    refs = [reg.push(make_lora_adapter(settings.layout.base("tiny-llama"), home / f"src-a{i}", r=8, seed=i),
                     f"adapter-{i}", base).ref for i in range(16)]
    routes_file = home / "routes.yaml"
    RoutesFile.from_mapping({"routes": {f"route-{i}": {"stable": refs[i]} for i in range(16)}}).save(routes_file)

    engine = LocalEngine(EngineConfig.from_settings(settings, settings.layout.base("tiny-llama"), "tiny-llama",
                                                    log_path=home / "engine.log", max_loras=16))
    print("starting vLLM ...")
    engine.start()
    gw_port = free_port()
    serve_in_thread(create_app(build_gateway(settings, "tiny-llama", [engine.root_url], routes_file)), gw_port)
    stub_port = free_port()
    serve_in_thread(stub_app, stub_port)
    stub_gw_port = free_port()
    serve_in_thread(create_app(Gateway(GatewayConfig(engine_urls=[f"http://127.0.0.1:{stub_port}"],
                                                     routes_file=home / "none.yaml"), None, base_name="stub")),
                    stub_gw_port)
    gw_url, direct_url = f"http://127.0.0.1:{gw_port}/v1", engine.url
    stub_url, stub_gw_url = f"http://127.0.0.1:{stub_port}/v1", f"http://127.0.0.1:{stub_gw_port}/v1"

    levels = [1, 8, 32] if args.quick else [1, 8, 32, 128]
    rows, plot = [], {"c": [], "ratio": [], "added_stub_p50": []}
    try:
        asyncio.run(load(gw_url, ["route-0"], 4, 8))  # load route-0 and warm up
        for c in levels:
            n = max(4 * c, 32) if not args.quick else max(2 * c, 16)
            direct = asyncio.run(load(direct_url, ["tiny-llama"], c, n))
            via = asyncio.run(load(gw_url, ["tiny-llama"], c, n))
            s_direct = asyncio.run(load(stub_url, ["stub"], c, n * 4))
            s_via = asyncio.run(load(stub_gw_url, ["stub"], c, n * 4))
            ratio = via["tok_s"] / direct["tok_s"]
            added = s_via["p50_ms"] - s_direct["p50_ms"]
            rows.append([c, direct["tok_s"], via["tok_s"], ratio, via["p50_ms"] - direct["p50_ms"],
                         via["p95_ms"] - direct["p95_ms"], added, s_via["p95_ms"] - s_direct["p95_ms"],
                         direct["failures"] + via["failures"] + s_via["failures"]])
            plot["c"].append(c)
            plot["ratio"].append(ratio)
            plot["added_stub_p50"].append(added)
        print_table("gateway vs direct (vLLM engine, tiny model) and vs a stub upstream",
                    ["streams", "direct tok/s", "gateway tok/s", "ratio", "+p50 ms (vLLM)", "+p95 ms (vLLM)",
                     "+p50 ms (stub)", "+p95 ms (stub)", "failures"], rows)

        mix_rows = []
        for k in (1, 4, 16):
            models = [f"route-{i}" for i in range(k)]
            # steady state: every adapter of the mix loaded first (cold loads are measured below)
            asyncio.run(load(gw_url, models, k, 2 * k))
            r = asyncio.run(load(gw_url, models, 16, 64 if args.quick else 128))
            mix_rows.append([k, r["tok_s"], r["p50_ms"], r["failures"]])
        for row in mix_rows:
            row.insert(2, row[1] / mix_rows[0][1])
        print_table("adapter mix through the gateway (16 streams)",
                    ["adapters", "tok/s", "vs 1 adapter", "p50 ms", "failures"], mix_rows)

        new = reg.push(make_lora_adapter(settings.layout.base("tiny-llama"), home / "src-new", r=8, seed=99),
                       "fresh", base).ref
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
    finally:
        engine.stop()

    OUT.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(plot["c"], plot["ratio"], "o-")
    axes[0].axhline(0.9, ls="--", c="r", label="target 0.9x")
    axes[0].set(xscale="log", xlabel="concurrent streams", ylabel="gateway / direct tok/s",
                title="throughput ratio (vLLM)")
    axes[0].legend()
    axes[1].plot(plot["c"], plot["added_stub_p50"], "o-")
    axes[1].axhline(2.0, ls="--", c="r", label="target 2 ms")
    axes[1].set(xscale="log", xlabel="concurrent streams", ylabel="ms", title="added p50 vs stub upstream")
    axes[1].legend()
    axes[2].bar([str(r[0]) for r in mix_rows], [r[1] for r in mix_rows])
    axes[2].set(xlabel="distinct adapters in the mix", ylabel="tok/s", title="adapter mix throughput")
    fig.tight_layout()
    path = OUT / "serving_bench.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
