"""Relaying one request to its engine and the answer back: sent (a refused or stale connection
is retried once, since no answer began), read whole, streamed through, or, for a route in
reject mode, streamed into a bounded buffer that is replayed once its output validated.

Every failure surfaces as a :class:`ServingError` (OpenAI's error shape): an httpx/aiohttp
failure through :func:`translate`, a body that is not JSON as :class:`UpstreamInvalid`, a
reject-mode stream over ``reject_stream_max_bytes`` as :class:`StreamTooLarge`. A stream that
fails once it has begun tells the client in-band (an error event). Releasing what the request
took is the caller's job, in one place (see ``Gateway.forward``); ``relay`` tells it the final
status through ``on_end``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable

import httpx

from lorafleet.serving.engines import Engine
from lorafleet.serving.errors import (
    ServingError,
    StreamTooLarge,
    UpstreamInvalid,
    error_body,
)
from lorafleet.serving.exchange import Outcome, SSEAccumulator, read_body
from lorafleet.serving.upstream import (
    CONNECT_TIMEOUT_S,
    AiohttpTransport,
    EngineResponse,
    translate,
)

__all__ = ["Relay"]

log = logging.getLogger("lorafleet.gateway")
_JSON = {"content-type": "application/json"}
_RETRY_ONCE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError, httpx.ConnectTimeout)


class Relay:
    def __init__(self, upstream: AiohttpTransport, upstream_timeout_s: float, reject_stream_max_bytes: int) -> None:
        self.upstream = upstream
        self.upstream_timeout_s = upstream_timeout_s
        self.reject_stream_max_bytes = reject_stream_max_bytes

    async def send(self, engine: Engine, path: str, body: dict) -> EngineResponse:
        url, content = f"{engine.root_url}{path}", json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                return await self.upstream.open("POST", url, _JSON, content, CONNECT_TIMEOUT_S,
                                                self.upstream_timeout_s)
            except _RETRY_ONCE as exc:
                # A pooled connection the engine had just closed, or a connection that failed to open
                # (refused, or not open within the connect timeout): no answer began, so the request
                # is sent once more.
                if attempt == 2:
                    log.warning("request to %s failed twice: %r", engine.root_url, exc)
                    raise translate(exc, engine.root_url) from exc
            except httpx.HTTPError as exc:
                log.warning("request to %s failed: %r", engine.root_url, exc)
                raise translate(exc, engine.root_url) from exc
        raise AssertionError("unreachable")

    async def read(self, response: EngineResponse, engine: Engine) -> bytes:
        """The whole answer; a connection lost or a timeout mid-body is a ServingError."""
        try:
            return await response.aread()
        except httpx.HTTPError as exc:
            log.warning("reading the answer of %s failed: %r", engine.root_url, exc)
            raise translate(exc, engine.root_url) from exc

    async def read_json(self, response: EngineResponse, engine: Engine, kind: str) -> tuple[bytes, Outcome]:
        content = await self.read(response, engine)
        try:
            data = json.loads(content)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return content, read_body(data, kind)
        except (ValueError, UnicodeDecodeError, RecursionError, AttributeError, TypeError) as exc:
            log.warning("the engine at %s answered a body that is not valid JSON: %r", engine.root_url, content[:200])
            raise UpstreamInvalid(f"the engine at {engine.root_url} answered an invalid body ({exc})") from None

    async def buffer(self, response: EngineResponse, acc: SSEAccumulator, engine: Engine,
                     started: float) -> list[bytes]:
        """Reject mode: the whole stream, held (at most ``reject_stream_max_bytes``) to be validated."""
        events: list[bytes] = []
        try:
            async for chunk in response.aiter_raw():
                events += acc.feed(chunk, time.perf_counter() - started)
                if acc.size_bytes > self.reject_stream_max_bytes:
                    raise StreamTooLarge(self.reject_stream_max_bytes)
            events += acc.flush()
        except httpx.HTTPError as exc:
            raise translate(exc, engine.root_url) from exc
        return events

    async def relay(self, response: EngineResponse, acc: SSEAccumulator, engine: Engine, started: float,
                    on_end: Callable[[int], None]) -> AsyncGenerator[bytes, None]:
        """The stream, passed through as it comes; ``on_end(status)`` runs once, however it ends."""
        status = 499  # the client left before the end (cancelled) unless set below
        try:
            async for chunk in response.aiter_raw():
                events = acc.feed(chunk, time.perf_counter() - started)
                if events:  # the events of one upstream read leave in one write
                    yield b"".join(events)
                    if acc.ended:  # the client has it all: hanging up now is not leaving early
                        status = 200
            for event in acc.flush():
                yield event
            status = 200
        except httpx.HTTPError as exc:  # the engine died or stalled mid-stream: tell the client in-band
            if not acc.ended:  # (after the last event its hang-up costs the client nothing)
                err = translate(exc, engine.root_url)
                status = err.status_code
                yield _error_event(err, acc.kind)
        except ServingError as err:
            status = err.status_code
            yield _error_event(err, acc.kind)
        except GeneratorExit:
            raise
        except Exception as exc:
            log.exception("relaying a stream from %s failed", engine.root_url)
            status = 500
            yield _error_event(ServingError(f"relaying the stream failed: {type(exc).__name__}",
                                            code="internal_error"), acc.kind)
        finally:
            await response.aclose()  # on client disconnect this cancels the engine's request
            on_end(status)


def _error_event(err: ServingError, kind: str) -> bytes:
    body = error_body(err.message, err.error_type, code=err.code)
    if kind == "responses":
        return f"event: error\ndata: {json.dumps({'type': 'error', **body['error']})}\n\n".encode()
    return f"data: {json.dumps(body)}\n\n".encode()
