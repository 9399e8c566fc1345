"""The gateway over two real vLLM engines (tiny base): load is balanced, adapters stick to
the engine that has them loaded, and load beyond the affinity slack outweighs affinity.

What each engine did is read from the engines themselves (vLLM's own request counter and
its /v1/models) and checked against the gateway's per-engine metrics.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from openai import AsyncOpenAI, OpenAI

from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread
from tests.metrics_text import samples, scrape, total

ROUTES = ("two-a", "two-b", "two-c", "two-d")
STICKY = "two-sticky"  # loaded on the second engine before the gateway starts
SLACK = 2  # affinity_slack_requests of the gateway under test
MSG = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def refs(settings, tiny_base, tmp_path_factory) -> dict[str, str]:
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    return {name: reg.push(make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp(name), r=4,
                                             seed=40 + i), name, tiny_base).ref
            for i, name in enumerate((*ROUTES, STICKY))}


@pytest.fixture(scope="module")
def engines(settings, tiny_base, tmp_path_factory, request):
    """The session engine and a second vLLM process on the same base (1 GiB KV cache), started side by side."""
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    log = tmp_path_factory.mktemp("engine2-logs") / "vllm.log"
    config = EngineConfig.from_settings(settings, settings.layout.base(TINY_BASE), TINY_BASE, log_path=log,
                                        max_lora_rank=64, kvcache_gib=1)
    second = LocalEngine(config).start(wait=False)
    try:
        request.getfixturevalue("refs")  # pushed while the engines boot
        first = request.getfixturevalue("engine")
        second.wait_ready()
        yield first, second
    finally:
        second.stop()


@pytest.fixture(scope="module")
def gw(settings, engines, refs, tmp_path_factory) -> GatewayThread:
    from lorafleet.registry import open_registry

    _first, second = engines
    path = open_registry(settings).materialize(refs[STICKY])
    r = httpx.post(f"{second.root_url}/v1/load_lora_adapter", timeout=60,
                   json={"lora_name": refs[STICKY], "lora_path": str(path)})
    assert r.status_code == 200, r.text
    folder = tmp_path_factory.mktemp("two-routes")
    RoutesFile.from_mapping({"routes": {name: {"stable": refs[name]} for name in (*ROUTES, STICKY)}}).save(
        folder / "routes.yaml")
    gateway = build_gateway(settings, TINY_BASE, [e.root_url for e in engines], folder / "routes.yaml",
                            affinity_slack_requests=SLACK)
    with GatewayThread(gateway) as thread:
        yield thread


# -- what each side says ---------------------------------------------------------------------
def vllm_requests(engine) -> float:
    """Requests the engine itself finished (vLLM's own counter)."""
    return total(scrape(engine.root_url), "vllm:request_success_total")


def gateway_counts(gw: GatewayThread) -> dict[tuple[str, str], float]:
    """{(engine URL, version): requests} from the gateway's lorafleet_engine_requests_total."""
    return {(s.labels["engine"], s.labels["version"]): s.value
            for s in samples(scrape(gw.root_url), "lorafleet_engine_requests_total")}


def engine_adapters(engine) -> set[str]:
    """Adapters the engine lists in its own /v1/models."""
    data = OpenAI(base_url=engine.url, api_key="x", max_retries=0).models.list().data
    return {m.id for m in data if (m.model_extra or {}).get("parent")}


def gateway_view(gw: GatewayThread) -> dict[str, dict]:
    return {e["url"]: e for e in httpx.get(f"{gw.root_url}/admin/engines", timeout=10).json()["engines"]}


class Snapshot:
    def __init__(self, gw: GatewayThread, engines) -> None:
        self.gw, self.engines = gw, engines
        self.counts = gateway_counts(gw)
        self.vllm = {e.root_url: vllm_requests(e) for e in engines}
        self.loads = {url: e["loads_total"] for url, e in gateway_view(gw).items()}

    def served(self, version: str | None = None) -> dict[str, float]:
        """{engine URL: requests the gateway sent there since the snapshot} (for one version, or all)."""
        now = gateway_counts(self.gw)
        out = {e.root_url: 0.0 for e in self.engines}
        for (url, v), n in now.items():
            if version is None or v == version:
                out[url] += n - self.counts.get((url, v), 0.0)
        return out

    def served_by_version(self) -> dict[tuple[str, str], float]:
        now = gateway_counts(self.gw)
        return {k: n - self.counts.get(k, 0.0) for k, n in now.items() if n - self.counts.get(k, 0.0) > 0}

    def new_loads(self) -> dict[str, int]:
        return {url: e["loads_total"] - self.loads[url] for url, e in gateway_view(self.gw).items()}

    def assert_engines_agree(self, timeout_s: float = 10.0) -> dict[str, float]:
        """Each engine's own request counter moved exactly as much as the gateway says it sent there."""
        sent = self.served()
        deadline = time.monotonic() + timeout_s
        while True:
            seen = {e.root_url: vllm_requests(e) - self.vllm[e.root_url] for e in self.engines}
            if seen == sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen == sent, (seen, sent)
        return sent


def chat(gw: GatewayThread, model: str, n: int) -> None:
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, max_tokens=8)
        assert raw.status_code == 200


async def burst(gw: GatewayThread, models: list[str], concurrency: int, max_tokens: int) -> None:
    client = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, model: str) -> None:
        async with sem:
            if i % 3 == 0:
                stream = await client.chat.completions.create(model=model, messages=MSG, max_tokens=max_tokens,
                                                              stream=True)
                async for _ in stream:
                    pass
            else:
                await client.chat.completions.create(model=model, messages=MSG, max_tokens=max_tokens)

    await asyncio.gather(*(one(i, m) for i, m in enumerate(models)))


# -- tests ----------------------------------------------------------------------------------
def test_a_version_loaded_on_one_engine_sticks_there_when_load_is_equal(gw, engines, refs) -> None:
    first, second = engines
    assert refs[STICKY] in gateway_view(gw)[second.root_url]["loaded"]  # learnt from the engine at start
    before = Snapshot(gw, engines)
    chat(gw, STICKY, 8)  # one at a time: both engines idle at each choice
    # without affinity the first engine (idle, no adapters) would have been chosen, and a load made
    assert before.served(refs[STICKY]) == {first.root_url: 0, second.root_url: 8}
    assert before.new_loads() == {first.root_url: 0, second.root_url: 0}
    before.assert_engines_agree()
    assert refs[STICKY] not in engine_adapters(first)


def test_concurrent_traffic_is_balanced_and_each_version_loaded_where_routed(gw, engines, refs) -> None:
    before = Snapshot(gw, engines)
    models = [ROUTES[i % len(ROUTES)] for i in range(48)]
    # 16 in flight against an affinity slack of 4: the pool must spill onto the other engine
    asyncio.run(burst(gw, models, concurrency=16, max_tokens=16))
    sent = before.assert_engines_agree()
    assert sum(sent.values()) == len(models)
    for url, n in sent.items():  # both engines served; how much each depends on timing and affinity
        assert n >= 1, sent
    routed = before.served_by_version()
    by_url = {e.root_url: e for e in engines}
    view = gateway_view(gw)
    for engine in engines:
        listed = engine_adapters(engine)
        assert set(view[engine.root_url]["loaded"]) == listed  # the gateway's view is the engine's truth
        assert view[engine.root_url]["inflight"] == 0 and view[engine.root_url]["in_use"] == {}
    for (url, version), n in routed.items():
        assert version in engine_adapters(by_url[url]), (url, version, n)
    for name in ROUTES:  # every version was served, and loaded at most once per engine
        assert any(v == refs[name] for (_u, v) in routed), (name, routed)
    assert all(n <= len(ROUTES) for n in before.new_loads().values()), before.new_loads()


def test_repeated_requests_stick_to_an_engine_that_has_the_version(gw, engines, refs) -> None:
    before = Snapshot(gw, engines)
    loaded = {e.root_url: engine_adapters(e) for e in engines}
    for name in ROUTES:
        chat(gw, name, 4)
        where = {url for url, n in before.served(refs[name]).items() if n}
        assert where and all(refs[name] in loaded[url] for url in where), (name, where, loaded)
    assert set(before.new_loads().values()) == {0}, before.new_loads()
    before.assert_engines_agree()


def test_load_beyond_the_slack_outweighs_affinity(gw, engines, refs) -> None:
    """A burst for the version only the second engine has: once it is SLACK requests busier, the
    first engine takes requests too (and loads the version, once)."""
    first, second = engines
    assert refs[STICKY] not in engine_adapters(first)
    before = Snapshot(gw, engines)
    asyncio.run(burst(gw, [STICKY] * 16, concurrency=16, max_tokens=64))
    served = before.served(refs[STICKY])
    assert served[second.root_url] >= SLACK + 1 and served[first.root_url] >= 1, served
    assert before.new_loads() == {first.root_url: 1, second.root_url: 0}
    assert refs[STICKY] in engine_adapters(first)
    before.assert_engines_agree()
