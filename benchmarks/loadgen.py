"""The serving benchmarks' load generator: N concurrent streamed chat completions over aiohttp,
latency to the last byte, and A-B-B-A pooling of two sides."""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import pct
from benchmarks.stub_engine import TOKENS

__all__ = ["MSG", "load", "summary", "abba"]

MSG = [{"role": "user", "content": "Tell me about the sea."}]


async def load(url: str, models: list[str], concurrency: int, requests: int, stagger_s: float = 0.0,
               headers: dict[str, str] | None = None, distinct_users: bool = False, **extra) -> dict:
    """``requests`` streamed chat completions, ``concurrency`` at a time; latency to the last byte.

    ``models[i % len(models)]`` is request i's model (a drawn sequence gives skewed traffic);
    ``distinct_users`` gives every request its own OpenAI ``user``. ``stagger_s`` spreads the
    streams' first requests over that long: streams of equal length that all start together stay
    in step, and each wave then arrives as one burst.
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
                if distinct_users:
                    body["user"] = f"user-{i}"
                t0 = time.perf_counter()
                async with session.post(f"{url}/chat/completions", json=body, headers=headers) as r:
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


