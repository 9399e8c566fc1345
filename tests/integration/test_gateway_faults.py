"""Gateway failure paths (issue 14) against a small real HTTP server posing as an engine
(tests/integration/fake_engine.py) and the official openai client: every fault is answered in
OpenAI's error shape, and afterwards nothing is still held (in-flight 0, no version in use,
the version can be unloaded). Also: a corrupted version is a non-retryable error, /metrics
answers 200 while the registry (a real moto S3 server) is gone, and a 1 GiB streamed upload
is refused with 413 while the gateway process's memory stays flat."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from lorafleet.engine.process import answers_ok, end_process_group, free_port
from lorafleet.serving.gateway import Gateway, GatewayConfig
from lorafleet.serving.routes import RoutesFile
from tests.integration.fake_engine import BASE, FakeEngine
from tests.integration.gateway_harness import GatewayThread
from tests.metrics_text import total

pytestmark = pytest.mark.slow


def write_routes(path: Path, routes: dict) -> None:
    RoutesFile.from_mapping({"routes": routes}).save(path)


def assert_held_nothing(gw: GatewayThread) -> None:
    deadline = time.monotonic() + 5  # a stream's end is recorded just after its last byte left
    while True:
        engines = httpx.get(f"{gw.root_url}/admin/engines", timeout=10).json()["engines"]
        if all(e["inflight"] == 0 and e["in_use"] == {} for e in engines) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(e["inflight"], e["in_use"]) for e in engines] == [(0, {})], engines


def openai_error(exc: openai.APIStatusError) -> dict:
    err = exc.response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    return err


@pytest.fixture(scope="module")
def fake():
    with FakeEngine() as engine:
        yield engine


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    from lorafleet.registry.errors import IntegrityError

    folder = tmp_path_factory.mktemp("faults")
    (folder / "schema.json").write_text(json.dumps({"type": "object"}))
    write_routes(folder / "routes.yaml", {
        "r": {"stable": "fake@1"}, "r2": {"stable": "fake@2"},
        "strict": {"stable": "fake@1", "schema": "schema.json", "validator": "reject"}})
    resolved: list[str] = []

    async def resolve_path(version: str) -> Path:
        resolved.append(version)
        if version == "fake@9":
            raise IntegrityError(f"{version}: adapter_model.safetensors does not match its sha256 (corrupted)")
        return folder

    config = GatewayConfig(engine_urls=[fake.root_url], routes_file=folder / "routes.yaml", upstream_timeout_s=1.0,
                           max_loaded_adapters=1, reject_stream_max_bytes=1024)
    with GatewayThread(Gateway(config, resolve_path, base_name=BASE)) as thread:
        thread.resolved = resolved
        yield thread


def chat(gw, content: str, model: str = "r", **kw):
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=30)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("drop", 503, "engine_unavailable"), ("badjson", 502, "upstream_invalid"), ("hang-body", 504, "upstream_timeout")])
def test_a_failed_answer_is_an_openai_error_and_gives_back_its_slot(gw, mode: str, status: int, code: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        chat(gw, mode)
    assert info.value.status_code == status and openai_error(info.value)["code"] == code
    assert_held_nothing(gw)


@pytest.mark.parametrize("mode", ["hang", "drop-stream"])
def test_a_stream_that_stalls_or_breaks_ends_with_an_error_event_and_gives_back_its_slot(gw, mode: str) -> None:
    with pytest.raises(openai.APIError, match="engine"):
        for _ in chat(gw, mode, stream=True):
            pass
    assert_held_nothing(gw)


def test_reject_mode_streams_are_bounded_and_give_back_their_slot(gw) -> None:
    for mode, status, code in (("big-stream", 502, "stream_too_large"), ("hang", 504, "upstream_timeout")):
        with pytest.raises(openai.APIStatusError) as info:
            chat(gw, mode, model="strict", stream=True)
        assert info.value.status_code == status and openai_error(info.value)["code"] == code, mode
        assert_held_nothing(gw)
    assert "".join(c.choices[0].delta.content or "" for c in chat(gw, "ok", model="strict", stream=True)) == "{}"


def test_a_client_gone_mid_stream_gives_back_its_slot(gw) -> None:
    with httpx.stream("POST", f"{gw.url}/chat/completions", timeout=30, json={
            "model": "r", "stream": True, "messages": [{"role": "user", "content": "hang"}]}) as r:
        assert r.status_code == 200
        next(r.iter_raw())
    assert_held_nothing(gw)


def test_a_client_that_hangs_up_after_the_last_event_is_counted_as_served(gw) -> None:
    """The openai client closes at ``data: [DONE]``; the engine ends its body 2 s later. The
    request was served whole: a 200 with its tokens, not a 499 (client gone)."""
    def requests(status: str) -> float:
        return total(httpx.get(f"{gw.root_url}/metrics", timeout=10).text, "lorafleet_requests_total",
                     route="r", status=status)

    served, gone = requests("200"), requests("499")
    started = time.monotonic()
    text = "".join(c.choices[0].delta.content or "" for c in chat(gw, "slow-close", stream=True))
    assert text == "{}" and time.monotonic() - started < 2  # the client did not wait for the body's end
    assert_held_nothing(gw)
    assert (requests("200") - served, requests("499") - gone) == (1, 0)


def test_after_the_faults_the_version_can_be_unloaded(gw, fake) -> None:
    chat(gw, "ok")  # fake@1 loaded (and released)
    assert chat(gw, "ok", model="r2").choices[0].message.content == "{}"  # max one loaded: fake@1 must go
    assert "fake@1" in fake.unloads
    assert_held_nothing(gw)


def test_a_corrupted_version_is_a_non_retryable_error(gw) -> None:
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=2, timeout=30)  # the SDK's retries are on
    before = gw.resolved.count("fake@9")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="r", messages=[{"role": "user", "content": "ok"}],
                                       extra_headers={"X-Lorafleet-Version": "fake@9"})
    err = openai_error(info.value)
    assert err["code"] == "adapter_corrupted" and "corrupted" in err["message"]
    assert "retry-after" not in info.value.response.headers
    assert info.value.response.headers["x-should-retry"] == "false"
    assert gw.resolved.count("fake@9") == before + 1  # the client did not retry it
    assert_held_nothing(gw)


def test_metrics_answer_200_while_the_registry_is_gone(fake, tmp_path) -> None:
    """Drift references come from a real S3 registry (moto): a version it does not have, then the
    S3 server stopped; Prometheus-style scrapes keep answering, and a version no longer routed
    is forgotten."""
    from lorafleet.registry.fingerprint import psi
    from lorafleet.registry.storage import S3Storage
    from lorafleet.registry.store import Registry
    from tests.registry_backends import moto_s3

    routes = tmp_path / "routes.yaml"
    write_routes(routes, {"r": {"stable": "fake@1"}})
    scrapes: list[int] = []
    registry = None

    async def reference(version: str):
        import asyncio

        return (await asyncio.to_thread(registry.resolve, version)).fingerprint  # raises NotFound: not there

    async def resolve_path(version: str) -> Path:
        return tmp_path

    def failed_lookups(text: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "lorafleet_reference_lookups_total" and s.labels.get("result") == "failed")

    def traffic_and_scrapes(gw, failed_before: float) -> str:
        for _ in range(3):
            chat(gw, "ok")
            scrapes.append(httpx.get(f"{gw.root_url}/metrics", timeout=10).status_code)
        deadline = time.monotonic() + 30
        while True:  # the lookup runs in the background; its failure is counted, nothing else breaks
            r = httpx.get(f"{gw.root_url}/metrics", timeout=10)
            scrapes.append(r.status_code)
            if failed_lookups(r.text) > failed_before or time.monotonic() > deadline:
                return r.text
            time.sleep(0.5)

    config = GatewayConfig(engine_urls=[fake.root_url], routes_file=routes, drift_min_samples=1,
                           drift_reference_retry_s=0.5)
    gateway = Gateway(config, resolve_path, base_name=BASE, reference=reference, psi=psi)
    with GatewayThread(gateway) as gw:
        with moto_s3("drift-refs") as endpoint:
            registry = Registry(S3Storage("drift-refs", "reg", endpoint), tmp_path / "cache")
            first = failed_lookups(traffic_and_scrapes(gw, 0))
            assert first >= 1
        # the S3 server is gone now: the next lookups fail too, and the scrapes go on
        assert failed_lookups(traffic_and_scrapes(gw, first)) > first
        assert gateway.drift.versions() == {"fake@1"}
        write_routes(routes, {"r": {"stable": "fake@2"}})
        deadline = time.monotonic() + 10
        while gateway.watcher.routes.routes["r"].stable != "fake@2" and time.monotonic() < deadline:
            time.sleep(0.05)
        scrapes.append(httpx.get(f"{gw.root_url}/metrics", timeout=10).status_code)
        assert gateway.drift.versions() == set()  # fake@1 is no longer routed: forgotten
    assert set(scrapes) == {200}, scrapes


_GATEWAY = textwrap.dedent("""
    import sys, uvicorn
    from pathlib import Path
    from lorafleet.serving.gateway import Gateway, GatewayConfig, create_app
    config = GatewayConfig(engine_urls=[sys.argv[1]], routes_file=Path(sys.argv[2]))
    uvicorn.run(create_app(Gateway(config, None, base_name="fake-base")), host="127.0.0.1",
                port=int(sys.argv[3]), log_level="warning")
""")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_1_gib_streamed_upload_is_refused_with_413_while_memory_stays_flat(fake, tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _GATEWAY, fake.root_url, str(tmp_path / "routes.yaml"),
                             str(port)], start_new_session=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not answers_ok(f"http://127.0.0.1:{port}/healthz"):
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        for _ in range(3):  # warm: the first requests import and allocate what every request needs
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                       json={"model": "fake-base", "messages": [{"role": "user", "content": "ok"}]})
        rss0 = peak = _rss_mib(proc.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:  # refused on the header alone
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 2147483648\r\n\r\n{")
            declared = b""
            while b"body_too_large" not in declared and (data := s.recv(65536)):
                declared += data
        assert declared.startswith(b"HTTP/1.1 413") and b"body_too_large" in declared, declared[:300]

        chunk = b"a" * (1 << 20)
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent, reply = 0, b""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(1024):  # up to 1 GiB, until the gateway answers
                if select.select([s], [], [], 0)[0]:
                    break
                try:
                    s.sendall(frame)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                if i % 16 == 0:
                    peak = max(peak, _rss_mib(proc.pid))
            s.settimeout(30)
            while b"\r\n\r\n" not in reply:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
        peak = max(peak, _rss_mib(proc.pid))
        print(f"\n1 GiB upload: refused after {sent / 2**20:.0f} MiB sent; gateway RSS {rss0:.0f} -> peak "
              f"{peak:.0f} MiB (load {os.getloadavg()[0]:.1f})")
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert peak - rss0 < 50, (rss0, peak)
        assert answers_ok(f"http://127.0.0.1:{port}/healthz")  # still serving
    finally:
        end_process_group(proc.pid)
