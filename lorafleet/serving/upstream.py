"""Talking to engines over HTTP: the one place upstream (httpx, vLLM) errors are translated.

The gateway's connections are aiohttp's (``AiohttpTransport``): httpcore's pool scans every
pooled connection, with a socket poll each, on every request, which made the gateway's CPU per
streamed request grow from 1.2 ms at 1 stream to 2.6 ms at 128 (benchmarks/serving_bench.py);
aiohttp's pool does not. Forwarded requests go straight to that pool (``AiohttpTransport.open``);
control calls use httpx's API over it. Either way failures surface as httpx's exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

from lorafleet.serving.errors import EngineUnavailable, ServingError, UpstreamTimeout

__all__ = ["translate", "make_client", "AiohttpTransport", "EngineResponse"]

KEEPALIVE_S = 2.0  # idle connections expire before vLLM's (uvicorn's) 5 s keep-alive closes them
CONNECT_TIMEOUT_S = 2.0
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def _as_httpx_error(exc: Exception, request: httpx.Request | None = None) -> httpx.HTTPError:
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


class EngineResponse(httpx.AsyncByteStream):
    """An engine's answer, as the gateway's data path uses it (``status_code``, ``headers``,
    ``aread``, ``aiter_raw``, ``aclose``) and as the body stream of an ``httpx.Response``.
    Failures are raised as httpx's exceptions. Closing it before the end drops the connection,
    which is how vLLM learns that the client has gone (it aborts the request); a body read to
    the end returns its connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response, self.status_code, self.headers = response, response.status, response.headers

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc) from exc

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc) from exc

    __aiter__ = aiter_raw

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp connection pool to the engines, with at most ``max_connections`` open at once
    (0: no cap; the gateway passes its ``upstream_max_connections``), beyond which requests wait.

    ``open`` is the gateway's data path: a forwarded request and its stream, without httpx's
    client layers (URL parsing, cookies, auth and redirect hooks, a second response object),
    which cost about a fifth of the gateway's CPU per streamed request. Control calls (health,
    adapter loads) use httpx's API over the same pool (``make_client``); httpx's timeouts map
    onto aiohttp's: connect -> sock_connect, read -> sock_read (the longest wait for the next
    bytes, as in httpx)."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S, max_connections: int = 0,
                 headers: dict[str, str] | None = None) -> None:
        self._keepalive_s = keepalive_s
        self._headers = headers  # sent with every request (the engines' bearer key)
        self._max_connections = max_connections  # 0: no cap
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # made lazily: it belongs to the running loop
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_s)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, headers=self._headers,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def open(self, method: str, url: str, headers, content: bytes, connect_s: float | None,
                   read_s: float | None) -> EngineResponse:
        """Send one request; the answer's body is left to read (or stream)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=read_s)
        try:
            response = await self._session_now().request(
                method, url, headers=headers, data=content, timeout=timeout, allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc) from exc
        return EngineResponse(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        try:
            answer = await self.open(request.method, str(request.url), headers, await request.aread(),
                                     t.get("connect"), t.get("read"))
        except httpx.HTTPError as exc:
            exc.request = request
            raise
        return httpx.Response(answer.status_code, headers=list(answer._response.raw_headers), stream=answer,
                              request=request, extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_client(timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                transport: AiohttpTransport | None = None) -> httpx.AsyncClient:
    """A client for control calls to the engines (httpx's API over aiohttp's pool, see the module
    docstring); pass the gateway's transport to share its pool."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                             transport=transport or AiohttpTransport())


def translate(exc: Exception, url: str) -> ServingError:
    """Map an httpx failure talking to ``url`` onto the gateway's HTTP errors."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamTimeout(f"the engine at {url} did not answer in time")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError | httpx.ReadError):
        return EngineUnavailable(f"the engine at {url} is unavailable ({type(exc).__name__})")
    return EngineUnavailable(f"the engine at {url} failed: {type(exc).__name__}: {exc}")
