"""EnginePool's choice of engine: least requests in flight, with adapter affinity within a slack.

The choice is pure bookkeeping over the pool's view of its engines (health, in-flight
counts, loaded versions), so it is tested on that view; loading over HTTP is covered by
tests/integration/test_two_engines.py with two real vLLM engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import pytest

from lorafleet.serving.engines import EnginePool
from lorafleet.serving.errors import EngineUnavailable


def pool(n: int = 2, slack: int = 2) -> EnginePool:
    return EnginePool([f"http://127.0.0.1:{9000 + i}" for i in range(n)], client=None, resolve_path=None,
                      max_loaded=8, affinity_slack_requests=slack)


def busy(p: EnginePool, i: int, n: int) -> None:
    for _ in range(n):
        p.acquire(p.engines[i], None)


def test_least_loaded_engine_wins_for_a_cold_version_and_for_the_base() -> None:
    p = pool(3)
    busy(p, 0, 2)
    busy(p, 1, 1)
    busy(p, 2, 3)
    assert p.pick("a@1") is p.engines[1]
    assert p.pick(None) is p.engines[1]


def test_ties_go_to_the_engine_with_fewer_adapters_so_idle_engines_share_versions() -> None:
    p = pool()
    p.engines[0].loaded["a@1"] = None
    assert p.pick("b@1") is p.engines[1]
    p.engines[1].loaded["b@1"] = None
    p.engines[1].loaded["c@1"] = None
    assert p.pick("d@1") is p.engines[0]


def test_an_engine_with_the_version_is_preferred_within_the_slack() -> None:
    p = pool(slack=2)
    p.engines[1].loaded["a@1"] = None
    assert p.pick("a@1") is p.engines[1]  # equal load: affinity
    busy(p, 1, 2)
    assert p.pick("a@1") is p.engines[1]  # 2 more in flight than the least loaded: still within slack
    busy(p, 1, 1)
    assert p.pick("a@1") is p.engines[0]  # 3 more: load wins, the version gets loaded there too
    p.engines[0].loaded["a@1"] = None
    assert p.pick("a@1") is p.engines[0]  # both have it: the less loaded one


def test_zero_slack_is_pure_least_loaded_with_affinity_only_on_ties() -> None:
    p = pool(slack=0)
    p.engines[0].loaded["a@1"] = None
    assert p.pick("a@1") is p.engines[0]
    busy(p, 0, 1)
    assert p.pick("a@1") is p.engines[1]


def test_a_version_being_loaded_counts_as_there() -> None:
    """Concurrent first requests for one version share its load instead of loading it everywhere."""
    p = pool(slack=4)
    p.engines[1].loading["a@1"] = 1
    assert p.pick("a@1") is p.engines[1]


def test_unhealthy_engines_are_skipped() -> None:
    p = pool()
    p.engines[0].loaded["a@1"] = None
    p.engines[0].healthy = False
    busy(p, 1, 5)
    assert p.pick("a@1") is p.engines[1]
    p.engines[1].healthy = False
    with pytest.raises(EngineUnavailable):
        p.pick("a@1")


def test_acquire_and_release_count_requests_and_lease_versions() -> None:
    p = pool()
    e = p.engines[0]
    p.acquire(e, "a@1")
    p.acquire(e, "a@1")
    p.acquire(e, None)
    assert e.inflight == 3 and e.in_use == {"a@1": 2}
    p.release(e, "a@1")
    p.release(e, None)
    p.release(e, "a@1")
    assert e.inflight == 0 and e.in_use == {}


def test_concurrent_first_requests_load_a_version_once_and_stop_counting_it_as_loading() -> None:
    p = pool()
    e = p.engines[0]
    loads: list[str] = []

    async def fake_load(engine, version: str) -> None:  # the HTTP call to vLLM, covered by integration tests
        loads.append(version)
        assert engine.has(version) and version not in engine.loaded
        await asyncio.sleep(0.01)
        engine.loaded[version] = None

    p._load = fake_load

    async def run() -> None:
        await asyncio.gather(*(p.ensure_loaded(e, "a@1") for _ in range(5)))

    asyncio.run(run())
    assert loads == ["a@1"] and "a@1" in e.loaded and e.loading == {}


def test_a_cold_tail_does_not_push_out_a_version_asked_for_every_few_requests() -> None:
    """Three slots; the hot version is asked for between every three cold ones. LRU unloaded it each
    time three cold versions arrived after it; eviction by recent uses keeps it and lets the tail churn.
    (The unload request goes to a port that refuses; the pool ignores that, as for a gone engine.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    p = EnginePool([f"http://127.0.0.1:{closed_port}"], client=None, resolve_path=None, max_loaded=3)
    e = p.engines[0]
    loads: list[str] = []

    async def fake_load(engine, version: str) -> None:  # the HTTP load, covered by integration tests
        await p._evict_idle(engine)
        loads.append(version)
        engine.loaded[version] = None

    p._load = fake_load
    asked = ["hot@1"] * 3 + [v for i in range(0, 30, 3) for v in (f"c{i}@1", f"c{i + 1}@1", f"c{i + 2}@1", "hot@1")]

    async def run() -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            p.client = client
            for version in asked:
                await p.ensure_loaded(e, version)

    asyncio.run(run())
    assert loads.count("hot@1") == 1, loads
    assert len(e.loaded) == 3 and "hot@1" in e.loaded and e.unloads_total == 30 - 2


def test_negative_slack_is_refused() -> None:
    with pytest.raises(ValueError, match="affinity_slack_requests"):
        pool(slack=-1)


def test_a_probe_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="down_after_failed_probes"):
        EnginePool(["http://127.0.0.1:9000"], client=None, resolve_path=None, max_loaded=8, down_after_failed_probes=0)


def test_health_slow_answers_need_three_in_a_row_a_refused_port_counts_at_once() -> None:
    """Probes against real sockets: a server that answers /health after 2.5 s (over the 2 s probe
    timeout) or with 500, and a port nobody listens on."""
    async def run() -> None:
        mode = {"delay": 2.5, "status": 200}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(mode["delay"])
            code = mode["status"]
            writer.write(f"HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()  # bound then closed: connecting is refused
        async with httpx.AsyncClient() as client:
            p = EnginePool([f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead_port}"], client=client,
                           resolve_path=None, max_loaded=8, down_after_failed_probes=3)
            slow, dead = p.engines
            slow.loaded["a@1"] = None
            for _ in range(p.down_after_failed_probes - 1):
                assert not await p.probe(slow)
            assert slow.healthy and slow.loaded  # busy, not gone: still serving
            mode["delay"] = 0.0
            assert await p.probe(slow) and slow.failed_probes == 0 and slow.loaded  # the count starts over
            mode["status"] = 500
            for _ in range(p.down_after_failed_probes):
                assert not await p.probe(slow)
            assert not slow.healthy
            mode["status"] = 200
            assert await p.probe(slow) and slow.healthy and not slow.loaded  # back, adapters forgotten

            assert not await p.probe(dead)
            assert not dead.healthy  # one refused connection is enough
        server.close()
        await server.wait_closed()

    asyncio.run(run())


def test_replace_url_keeps_the_engine_forgets_its_adapters_and_resets_health() -> None:
    """A supervisor restarted an engine on a fresh port: the gateway's Engine follows it."""
    p = pool(2)
    e = p.engines[0]
    e.loaded["a@1"] = None
    e.healthy, e.failed_probes = False, 3
    p.acquire(e, "a@1")  # a request still running on the old process
    p.replace_url("http://127.0.0.1:9000/v1/", "http://127.0.0.1:9100")
    assert p.engines[0] is e and e.root_url == "http://127.0.0.1:9100"
    assert not e.loaded and e.healthy and e.failed_probes == 0
    assert e.inflight == 1 and e.in_use == {"a@1": 1}  # the old request releases what it took
    p.release(e, "a@1")
    assert e.inflight == 0 and e.in_use == {}
    assert p.pick("a@1") is e  # back in rotation under its new URL
    with pytest.raises(ValueError, match="old_root_url 'http://127.0.0.1:9000'"):
        p.replace_url("http://127.0.0.1:9000", "http://127.0.0.1:9200")
    with pytest.raises(ValueError, match="new_root_url"):
        p.replace_url("http://127.0.0.1:9100", "http://127.0.0.1:9001")


def test_a_load_that_ends_after_replace_url_does_not_count_for_the_new_process() -> None:
    """A load sent to the old process answers after the restart: the new process has no such adapter."""
    async def run() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            p.replace_url(old, "http://127.0.0.1:9999")  # the supervisor's callback, mid-load
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        old = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        async def resolve(version: str):
            return "/nowhere"

        async with httpx.AsyncClient() as client:
            p = EnginePool([old], client=client, resolve_path=resolve, max_loaded=8)
            with pytest.raises(EngineUnavailable, match="restarted"):
                await p.ensure_loaded(p.engines[0], "a@1")
            assert not p.engines[0].loaded and p.engines[0].root_url == "http://127.0.0.1:9999"
        server.close()
        await server.wait_closed()

    asyncio.run(run())
