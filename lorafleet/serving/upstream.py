"""Talking to engines over HTTP: the one place upstream (httpx, vLLM) errors are translated.

The gateway speaks httpx's API, but its connections are aiohttp's (``AiohttpTransport``):
httpcore's pool scans every pooled connection, with a socket poll each, on every request,
which made the gateway's CPU per streamed request grow from 1.2 ms at 1 stream to 2.6 ms
at 128 (benchmarks/serving_bench.py); aiohttp's pool does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

from lorafleet.serving.errors import EngineUnavailable, ServingError, UpstreamTimeout

__all__ = ["translate", "make_client", "answers_ok", "AiohttpTransport"]

KEEPALIVE_S = 2.0  # idle connections expire before vLLM's (uvicorn's) 5 s keep-alive closes them
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def _as_httpx_error(exc: Exception, request: httpx.Request) -> httpx.HTTPError:
    """aiohttp's failure as the httpx exception ``translate`` (and httpx callers) understand."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timeout", request=request)
    if isinstance(exc, TimeoutError):  # aiohttp.SocketTimeoutError (sock_read) is one
        return httpx.ReadTimeout(str(exc) or "read timeout", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(str(exc), request=request)
    return httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's stream. Closing it before the end drops the
    connection, which is how vLLM learns that the client has gone (it aborts the request);
    a body read to the end returns its connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp connection pool (no connection cap: vLLM queues
    by itself). httpx's timeouts map onto aiohttp's: connect -> sock_connect, read -> sock_read
    (the longest wait for the next bytes, as in httpx)."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # made lazily: it belongs to the running loop
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self._keepalive_s)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.get("connect"), sock_read=t.get("read"))
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        try:
            response = await self._session_now().request(
                request.method, str(request.url), headers=headers, data=await request.aread(), timeout=timeout,
                allow_redirects=False, skip_auto_headers=("User-Agent", "Accept-Encoding"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        return httpx.Response(response.status, headers=list(response.raw_headers), stream=_Body(response, request),
                              request=request, extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_client(timeout_s: float, connect_timeout_s: float = 2.0) -> httpx.AsyncClient:
    """One pooled client for all engines (httpx's API over aiohttp's pool, see the module docstring)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                             transport=AiohttpTransport())


def translate(exc: Exception, url: str) -> ServingError:
    """Map an httpx failure talking to ``url`` onto the gateway's HTTP errors."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamTimeout(f"the engine at {url} did not answer in time")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError | httpx.ReadError):
        return EngineUnavailable(f"the engine at {url} is unavailable ({type(exc).__name__})")
    return EngineUnavailable(f"the engine at {url} failed: {type(exc).__name__}: {exc}")


def answers_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if a GET of ``url`` answers 200 (health and readiness probes); any failure is False."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False
