"""EventStreamResponse under a real uvicorn server: every chunk arrives, and a client that
leaves mid-stream stops the source at once (the gateway relies on that to cancel the engine's
request; tests/integration/test_gateway.py checks it end to end against vLLM)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from lorafleet.engine.process import free_port
from lorafleet.serving.streaming import EventStreamResponse


class Source:
    """An SSE source that records how it ended."""

    def __init__(self, n: int | None, gap_s: float) -> None:
        self.n, self.gap_s = n, gap_s
        self.sent = 0
        self.ended: str | None = None
        self.closed = threading.Event()

    async def events(self):
        try:
            while self.n is None or self.sent < self.n:
                yield f"data: {self.sent}\n\n".encode()
                self.sent += 1
                await asyncio.sleep(self.gap_s)
            self.ended = "finished"
        except (asyncio.CancelledError, GeneratorExit) as exc:
            self.ended = type(exc).__name__
            raise
        finally:
            self.closed.set()


@contextlib.contextmanager
def serve(source: Source):
    async def endpoint(_request):
        return EventStreamResponse(source.events(), headers={"X-Test": "yes"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/s", endpoint)]), host="127.0.0.1", port=port,
                                           log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/s"
    finally:
        server.should_exit = True
        thread.join(10)


def test_every_chunk_arrives_with_the_headers_and_the_source_finishes() -> None:
    source = Source(n=50, gap_s=0)
    with serve(source) as url:
        r = httpx.get(url, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-test"] == "yes"
    assert r.text == "".join(f"data: {i}\n\n" for i in range(50))
    assert source.ended == "finished"


@pytest.mark.parametrize("gap_s", [0.05, 30.0], ids=["chunks-flowing", "source-waiting"])
def test_a_client_that_leaves_mid_stream_stops_the_source_at_once(gap_s: float) -> None:
    """Also while the source is waiting for its next chunk (an engine still thinking)."""
    source = Source(n=None, gap_s=gap_s)
    with serve(source) as url:
        with httpx.stream("GET", url, timeout=10) as r:
            first = next(r.iter_raw())
            assert first.startswith(b"data: 0")
        left = time.monotonic()  # the connection is closed here
        assert source.closed.wait(5), "the source was not stopped after the client left"
        stopped_after = time.monotonic() - left
    assert source.ended in ("CancelledError", "GeneratorExit")
    assert stopped_after < 2.0
    if gap_s > 1:
        assert source.sent == 1  # stopped while waiting, long before its next chunk was due


def test_on_close_runs_when_the_stream_ends_and_when_it_never_started() -> None:
    """The gateway gives a request's engine slot back in ``on_close`` when the stream never ran
    (closing a generator that never started does not run its ``finally``)."""
    closes: list[str] = []

    async def on_close() -> None:
        closes.append("closed")

    source = Source(n=3, gap_s=0)

    async def endpoint(_request):
        return EventStreamResponse(source.events(), on_close=on_close)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/s", endpoint)]), host="127.0.0.1", port=port,
                                           log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        assert httpx.get(f"http://127.0.0.1:{port}/s", timeout=10).text.count("data:") == 3
    finally:
        server.should_exit = True
        thread.join(10)
    assert closes == ["closed"] and source.ended == "finished"

    async def never_started() -> None:  # the connection is gone before the response could start
        unstarted = Source(n=3, gap_s=0)

        async def receive():
            await asyncio.sleep(3600)

        async def send(message):
            raise OSError("connection lost")

        with pytest.raises(OSError):
            await EventStreamResponse(unstarted.events(), on_close=on_close)({"type": "http"}, receive, send)
        assert unstarted.sent == 0 and not unstarted.closed.is_set()  # its finally never ran ...

    asyncio.run(never_started())
    assert closes == ["closed", "closed"]  # ... but on_close did
