"""Talking to engines over HTTP: the one place upstream (httpx, vLLM) errors are translated."""

from __future__ import annotations

import httpx

from lorafleet.serving.errors import EngineUnavailable, ServingError, UpstreamTimeout

__all__ = ["translate", "make_client", "answers_ok"]


def make_client(timeout_s: float, connect_timeout_s: float = 2.0) -> httpx.AsyncClient:
    """One pooled client for all engines; no connection cap (vLLM queues by itself)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        # idle connections expire before vLLM's (uvicorn's) 5 s keep-alive closes them
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=2.0),
    )


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
