"""The gateway over a real vLLM engine (tiny model), called with the official openai client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from lorafleet.serving.gateway import Gateway, GatewayConfig
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread

MSG = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def versions(settings, tiny_base, tmp_path_factory) -> dict[str, list[str]]:
    """Adapter versions pushed to the real registry: support@1..3 and lru@1..3."""
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    out: dict[str, list[str]] = {}
    for name, seeds in (("support", (1, 2, 3)), ("lru", (4, 5, 6))):
        for seed in seeds:
            src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp(f"{name}{seed}"),
                                    r=8, scale=40.0, seed=seed)
            out.setdefault(name, []).append(reg.push(src, name, tiny_base).ref)
    return out


def write_routes(path: Path, routes: dict) -> None:
    RoutesFile.from_mapping({"routes": routes}).save(path)


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def routes_applied(gw: GatewayThread, expected: dict) -> bool:
    current = httpx.get(f"{gw.root_url}/admin/routes").json()["routes"]
    return all(current.get(k, {}).get("stable") == v["stable"] and
               (current[k].get("canary") or {}).get("weight", 0) == (v.get("canary") or {}).get("weight", 0)
               for k, v in expected.items())


def set_routes(gw: GatewayThread, path: Path, routes: dict) -> None:
    write_routes(path, routes)
    wait_for(lambda: routes_applied(gw, routes), timeout_s=2.0)


@pytest.fixture(scope="module")
def routes_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("routes") / "routes.yaml"


@pytest.fixture(scope="module")
def gw(settings, engine, versions, routes_path) -> GatewayThread:
    write_routes(routes_path, {"support": {"stable": versions["support"][0]}})
    with GatewayThread(build_gateway(settings, TINY_BASE, [engine.root_url], routes_path)) as thread:
        yield thread


@pytest.fixture()
def client(gw) -> OpenAI:
    return OpenAI(base_url=gw.url, api_key="unused", max_retries=0)


def greedy(client: OpenAI, model: str, **kw) -> tuple[str, dict]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, temperature=0,
                                                            max_tokens=10, **kw)
    return raw.parse().choices[0].message.content, dict(raw.headers)


def test_an_idle_client_connection_outlives_the_sdks_keep_alive(gw) -> None:
    """The openai SDK (httpx) reuses a pooled connection for up to 5 s; uvicorn's default also
    closes it after 5 s, so a request sent at that moment met a reset in a fleet test. The
    gateway keeps idle connections for ``keep_alive_s`` (75 s): after 6 s the socket still answers."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock
    time.sleep(6)
    conn.request("GET", "/v1/models")  # http.client reconnects only if the socket was closed
    assert conn.getresponse().status == 200 and conn.sock is sock, "the gateway closed the idle connection"
    conn.close()


def test_base_and_adapter_sync_async_and_streaming(gw, client, engine, versions) -> None:
    base_text, h = greedy(client, TINY_BASE)
    assert h["x-lorafleet-variant"] == "base" and h["x-lorafleet-version"] == "base"

    text, h = greedy(client, "support")
    assert h["x-lorafleet-route"] == "support"
    assert h["x-lorafleet-version"] == versions["support"][0] and h["x-lorafleet-variant"] == "stable"
    assert text != base_text
    direct = OpenAI(base_url=engine.url, api_key="x", max_retries=0)
    assert greedy(direct, versions["support"][0])[0] == text  # same as asking vLLM for that version

    async def async_call() -> str:
        aclient = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        r = await aclient.chat.completions.create(model="support", messages=MSG, temperature=0, max_tokens=10)
        return r.choices[0].message.content

    assert asyncio.run(async_call()) == text

    stream = client.chat.completions.create(model="support", messages=MSG, temperature=0, max_tokens=10,
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text

    comp = client.completions.create(model="support", prompt="The sea is", temperature=0, max_tokens=6)
    streamed = client.completions.create(model="support", prompt="The sea is", temperature=0, max_tokens=6,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == comp.choices[0].text


def test_models_lists_logical_models_with_their_versions(client, versions) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert TINY_BASE in models
    assert models["support"].model_extra["versions"]["stable"] == versions["support"][0]


def test_five_percent_canary_over_2000_users(gw, routes_path, versions) -> None:
    v1, v2, _ = versions["support"]
    set_routes(gw, routes_path, {"support": {"stable": v1, "canary": {"version": v2, "weight": 5}}})

    async def run() -> dict[str, str]:
        aclient = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        sem = asyncio.Semaphore(48)
        seen: dict[str, str] = {}

        async def one(user: str) -> None:
            async with sem:
                raw = await aclient.chat.completions.with_raw_response.create(
                    model="support", messages=MSG, max_tokens=1, user=user)
                seen[user] = raw.headers["x-lorafleet-variant"]

        await asyncio.gather(*(one(f"user-{i}") for i in range(2000)))
        return seen

    seen = asyncio.run(run())
    canary = sum(v == "canary" for v in seen.values())
    # binomial(2000, 0.05): mean 100, sd 9.75; 4 sd either side
    assert 61 <= canary <= 139, canary
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    for user in list(seen)[:40]:
        raw = client.chat.completions.with_raw_response.create(model="support", messages=MSG, max_tokens=1, user=user)
        assert raw.headers["x-lorafleet-variant"] == seen[user]


def test_routes_edits_under_load_fail_no_request(gw, routes_path, versions) -> None:
    v1, v2, v3 = versions["support"]
    set_routes(gw, routes_path, {"support": {"stable": v1}})
    stop = threading.Event()
    results: list[tuple[float, str | None]] = []
    errors: list[str] = []

    def worker(i: int) -> None:
        client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()  # routing happens at the start: judge by start time
            try:
                if n % 3 == 0:
                    stream = client.chat.completions.create(model="support", messages=MSG, max_tokens=4,
                                                            stream=True, user=f"w{i}-{n}")
                    chunks = list(stream)
                    assert chunks
                    results.append((started, None))
                else:
                    raw = client.chat.completions.with_raw_response.create(
                        model="support", messages=MSG, max_tokens=4, user=f"w{i}-{n}")
                    results.append((started, raw.headers["x-lorafleet-version"]))
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        set_routes(gw, routes_path, {"support": {"stable": v1, "canary": {"version": v2, "weight": 50}}})
        time.sleep(2)
        set_routes(gw, routes_path, {"support": {"stable": v3}})
        switched = time.monotonic()
        time.sleep(2)
        routes_path.write_text("routes: {support: {stable: support@999}}\n")  # a bad edit
        wait_for(lambda: httpx.get(f"{gw.root_url}/admin/routes").json()["last_error"] is not None)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == [], errors[:5]
    assert len(results) > 30  # how many fit in the 7.5 s depends on the machine's load, not the gateway
    seen_before = {v for t, v in results if v and t < switched}
    after = [v for t, v in results if v and t > switched]
    assert {v1, v2} <= seen_before
    assert after and set(after) == {v3}, set(after)  # the bad edit changed nothing
    admin = httpx.get(f"{gw.root_url}/admin/routes").json()
    assert "support@999" in admin["last_error"] and admin["routes"]["support"]["stable"] == v3


def _error(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_bad_requests_get_openai_errors(gw, client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert info.value.status_code == 404 and "no-such-model" in info.value.message

    post = lambda body, **kw: httpx.post(f"{gw.url}/chat/completions", timeout=30, **kw)  # noqa: E731
    r = post(None, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and _error(r)["code"] == "invalid_json"
    for patch, param in (({"max_tokens": -5}, "max_tokens"), ({"temperature": 9}, "temperature"),
                         ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role")):
        r = post(None, json={"model": "support", "messages": MSG, **patch})
        assert r.status_code == 400 and _error(r)["param"] == param, r.text

    with pytest.raises(openai.BadRequestError) as info:  # longer than the context: vLLM's own 400
        client.chat.completions.create(model="support", messages=[{"role": "user", "content": "sea " * 5000}],
                                       max_tokens=4)
    assert info.value.status_code == 400


def test_engine_down_is_503_with_retry_after(tmp_path, settings) -> None:
    from lorafleet.engine.process import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    config = GatewayConfig(engine_urls=[dead], routes_file=tmp_path / "routes.yaml")
    with GatewayThread(Gateway(config, resolve_path=None, base_name=TINY_BASE)) as gw:
        started = time.perf_counter()
        r = httpx.post(f"{gw.url}/chat/completions", json={"model": TINY_BASE, "messages": MSG}, timeout=30)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert _error(r)["code"] == "engine_unavailable"
        assert time.perf_counter() - started < 5
        assert httpx.get(f"{gw.root_url}/readyz").status_code == 503


def test_upstream_timeout_is_504(tmp_path, engine) -> None:
    config = GatewayConfig(engine_urls=[engine.root_url], routes_file=tmp_path / "routes.yaml",
                           upstream_timeout_s=0.05)
    with GatewayThread(Gateway(config, resolve_path=None, base_name=TINY_BASE)) as gw:
        r = httpx.post(f"{gw.url}/chat/completions", timeout=30, json={
            "model": TINY_BASE, "messages": MSG, "max_tokens": 1500, "ignore_eos": True})
        assert r.status_code == 504 and _error(r)["code"] == "upstream_timeout"


def _engine_counts(engine) -> tuple[float, float]:
    """(requests running, generated tokens so far) from the engine's own metrics."""
    text = httpx.get(f"{engine.root_url}/metrics", timeout=60).text
    return tuple(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))
                 for name in ("vllm:num_requests_running", "vllm:generation_tokens_total"))


def _settled_generated_tokens(engine) -> float:
    """Generated tokens once nothing runs and the count has stopped moving for a second."""
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running, generated = _engine_counts(engine)
        if running == 0 and generated == last:
            return generated
        last = generated if running == 0 else None
        time.sleep(1.0)
    raise AssertionError("the engine never went idle")


def test_client_disconnect_mid_stream_cancels_the_engine_request(gw, engine) -> None:
    """The client leaves after the first tokens; the engine must stop well short of max_tokens.

    Judged by vLLM's token counter once the engine is idle, not by a gauge read mid-stream:
    the tiny model writes ~1,000 tokens/s when alone, and a busy engine answers /metrics late.
    """
    max_tokens = 1900
    before = _settled_generated_tokens(engine)
    body = {"model": TINY_BASE, "messages": MSG, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{gw.url}/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        chunks = resp.iter_raw()
        next(chunks)
        next(chunks)  # a token has been generated: the request runs on the engine; now hang up
    generated = _settled_generated_tokens(engine) - before
    assert 1 <= generated < max_tokens / 2, f"the engine generated {generated:.0f} of {max_tokens} tokens"


def test_lru_unloads_idle_versions_never_one_in_use(settings, engine, versions, tmp_path) -> None:
    l1, l2, l3 = versions["lru"]
    routes = tmp_path / "routes.yaml"
    write_routes(routes, {"lru-a": {"stable": l1}, "lru-b": {"stable": l2}, "lru-c": {"stable": l3}})
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], routes)
    gateway.config.max_loaded_adapters = 2
    gateway.pool.engines[0].max_loaded = 2
    with GatewayThread(gateway) as gw:
        eng = gateway.pool.engines[0]
        # start from a known state whatever earlier tests left on the shared engine: nothing
        # loaded (its CPU adapter cache is bounded, and the versions of other tests count)
        for m in httpx.get(f"{engine.url}/models", timeout=10).json()["data"]:
            if m["id"] != TINY_BASE:
                httpx.post(f"{engine.root_url}/v1/unload_lora_adapter", json={"lora_name": m["id"]}, timeout=30)
        eng.loaded.clear()
        loads_before = eng.loads_total

        async def burst() -> list[str]:
            aclient = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
            rs = await asyncio.gather(*(aclient.chat.completions.with_raw_response.create(
                model="lru-a", messages=MSG, max_tokens=2) for _ in range(12)))
            return [r.headers["x-lorafleet-version"] for r in rs]

        assert asyncio.run(burst()) == [l1] * 12
        assert eng.loads_total - loads_before == 1  # twelve first requests, one load

        # a stream that stays in use while two other versions load, however fast the engine: a slow
        # client. It reads one line, then nothing until the loads are done. The gateway's socket can
        # buffer up to 4 MB (tcp_wmem's autotuned maximum) on top of the client's 64 KiB, so the
        # stream must be larger than both: 12 x 1,900 chunks of about 256 bytes are ~5.8 MB, and the
        # gateway's relay waits on the client with the version leased. (6 x 1,900, ~2.9 MB, fit in
        # the buffers: a full run saw the stream end before the loads.)
        body = {"model": "lru-a", "messages": MSG, "max_tokens": 1900, "n": 12, "ignore_eos": True, "stream": True}
        slow = httpx.Client(timeout=120, transport=httpx.HTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)]))
        with slow, slow.stream("POST", f"{gw.url}/chat/completions", json=body) as long_stream:
            it = long_stream.iter_lines()
            next(it)
            client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
            for model in ("lru-b", "lru-c"):
                client.chat.completions.create(model=model, messages=MSG, max_tokens=2)
            assert eng.in_use.get(l1), "the long stream ended before the other versions loaded"
            loaded = list(eng.loaded)
            assert l1 in loaded and l3 in loaded and l2 not in loaded, loaded
            rest = [line for line in it if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]"
        # an in-band error is a chunk whose JSON has an "error" key (the random model may well *say* "error")
        errors = [line for line in rest[:-1] if "error" in json.loads(line.removeprefix("data: "))]
        assert not errors, errors[:2]
        engine_models = {m["id"] for m in httpx.get(f"{engine.url}/models").json()["data"]}
        assert l2 not in engine_models and l1 in engine_models
