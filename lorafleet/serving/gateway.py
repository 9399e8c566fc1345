"""The OpenAI-compatible gateway: auth-free core of `platform serve` (guardrails come on top).

Per request: parse and check the body -> route -> variant (sticky) -> engine -> make sure
the version is loaded -> forward under the versioned adapter name -> answer with headers
naming route, version and variant. The base model is routable under its own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorafleet.core.config import ConfigModel
from lorafleet.serving.engines import Engine, EnginePool, PathResolver
from lorafleet.serving.errors import AdapterLoadFailed, BadRequest, ModelNotFound, ServingError, error_body
from lorafleet.serving.metrics import GatewayMetrics
from lorafleet.serving.params import check_request
from lorafleet.serving.router import choose
from lorafleet.serving.routes_watch import RoutesWatcher, VersionCheck
from lorafleet.serving.upstream import make_client, translate

__all__ = ["GatewayConfig", "Gateway", "create_app", "Target"]

log = logging.getLogger("lorafleet.gateway")


class GatewayConfig(ConfigModel):
    """How the gateway runs."""

    engine_urls: list[str] = Field(min_length=1, description="Root URLs of the vLLM engines.")
    routes_file: Path = Field(description="The routes file to watch.")
    upstream_timeout_s: float = Field(default=120.0, gt=0, description="Read timeout towards an engine.")
    routes_poll_interval_s: float = Field(default=0.25, gt=0, description="How often the routes file is checked.")
    health_interval_s: float = Field(default=1.0, gt=0, description="How often engines are health-checked.")
    max_loaded_adapters: int = Field(default=16, ge=1, description="Adapter versions kept per engine (LRU).")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Largest request body.")


@dataclass(frozen=True, slots=True)
class Target:
    route: str
    version: str | None  # name@N, None for the base model
    variant: str  # stable | canary | base

    def headers(self) -> dict[str, str]:
        return {"X-Lorafleet-Route": self.route, "X-Lorafleet-Version": self.version or "base",
                "X-Lorafleet-Variant": self.variant}


class Gateway:
    """State of one gateway: routes, engines, metrics."""

    def __init__(self, config: GatewayConfig, resolve_path: PathResolver,
                 check_version: VersionCheck | None = None, base_name: str | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.watcher = RoutesWatcher(config.routes_file, check_version,
                                     on_reload=lambda r: self.metrics.routes_reloads.labels(r).inc())
        self.client = make_client(config.upstream_timeout_s)
        self.pool = EnginePool(config.engine_urls, self.client, resolve_path, config.max_loaded_adapters)
        self._base_name = base_name
        self._tasks: list[asyncio.Task] = []

    @property
    def base_name(self) -> str | None:
        return self._base_name or self.pool.base_name

    async def start(self) -> None:
        self.watcher.poll()
        for engine in self.pool.engines:
            if await self.pool.probe(engine):
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    await self.pool.discover(engine)
        self._tasks = [
            asyncio.create_task(self.watcher.watch(self.config.routes_poll_interval_s)),
            asyncio.create_task(self.pool.watch_health(self.config.health_interval_s)),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    # -- routing ----------------------------------------------------------------------------
    def target(self, model: str, key: str | None) -> Target:
        route = self.watcher.routes.routes.get(model)
        if route is not None:
            choice = choose(model, route, key)
            return Target(model, choice.version, choice.variant)
        if model == self.base_name:
            return Target(model, None, "base")
        raise ModelNotFound(model)

    def stable_of(self, target: Target) -> Target:
        route = self.watcher.routes.routes.get(target.route)
        return Target(target.route, route.stable if route else target.version, "stable")

    async def prepare(self, target: Target) -> tuple[Target, Engine]:
        """Pick an engine and load the version; a canary that cannot load falls back to stable."""
        engine = self.pool.pick(target.version)
        if target.version is None:
            return target, engine
        try:
            await self.pool.ensure_loaded(engine, target.version)
            self.metrics.adapter_loads.labels("ok").inc()
        except AdapterLoadFailed as err:
            self.metrics.adapter_loads.labels("failed").inc()
            if target.variant != "canary":
                raise
            log.error("canary failed to load, serving stable instead: %s", err)
            return await self.prepare(self.stable_of(target))
        return target, engine

    # -- forwarding -------------------------------------------------------------------------
    async def _send(self, engine: Engine, path: str, body: dict, stream: bool) -> httpx.Response:
        request = self.client.build_request(
            "POST", f"{engine.root_url}{path}", content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            return await self.client.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise translate(exc, engine.root_url) from exc

    async def forward(self, request: Request, path: str, kind: str) -> Response:
        started = time.perf_counter()
        raw = await request.body()
        if len(raw) > self.config.max_body_bytes:
            raise BadRequest(f"The request body is larger than {self.config.max_body_bytes} bytes.",
                             code="body_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
        check_request(body, kind)
        key = body.get("user") or request.headers.get("x-session-id")
        target, engine = await self.prepare(self.target(body["model"], key))
        stream = bool(body.get("stream"))
        self.pool.acquire(engine, target.version)
        released = False

        def finish(status: int) -> None:
            nonlocal released
            if not released:
                released = True
                self.pool.release(engine, target.version)
                self.metrics.requests.labels(target.route, target.version or "base", target.variant,
                                             str(status)).inc()
                self.metrics.request_duration.labels(target.route, target.variant).observe(
                    time.perf_counter() - started)

        try:
            body["model"] = target.version or self.base_name
            upstream = await self._send(engine, path, body, stream)
            if upstream.status_code == 404 and target.version is not None:
                # The engine forgot the adapter (it restarted): load it again and retry once.
                await upstream.aclose()
                engine.loaded.pop(target.version, None)
                await self.pool.ensure_loaded(engine, target.version)
                upstream = await self._send(engine, path, body, stream)
        except BaseException as exc:
            finish(getattr(exc, "status_code", 500))
            raise
        headers = target.headers()
        if not stream or upstream.status_code != 200:
            content = await upstream.aread()
            await upstream.aclose()
            finish(upstream.status_code)
            return Response(content, status_code=upstream.status_code, headers=headers,
                            media_type=upstream.headers.get("content-type", "application/json"))

        async def relay() -> AsyncIterator[bytes]:
            status = 200
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError as exc:  # the engine died mid-stream: tell the client in-band
                err = translate(exc, engine.root_url)
                status = err.status_code
                payload = error_body(err.message, err.error_type, code=err.code)
                yield f"data: {json.dumps(payload)}\n\n".encode()
            finally:
                await upstream.aclose()  # on client disconnect this cancels the engine's request
                finish(status)

        return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)

    # -- views ------------------------------------------------------------------------------
    def models(self) -> dict:
        data = []
        base = self.base_name
        if base:
            data.append({"id": base, "object": "model", "created": 0, "owned_by": "lorafleet", "root": base,
                         "parent": None})
        for name, route in self.watcher.routes.routes.items():
            data.append({
                "id": name, "object": "model", "created": 0, "owned_by": "lorafleet", "root": base,
                "parent": base,
                "versions": {"stable": route.stable,
                             "canary": route.canary.version if route.canary else None,
                             "canary_weight": route.canary.weight if route.canary else 0.0},
            })
        return {"object": "list", "data": data}

    def admin_routes(self) -> dict:
        w = self.watcher
        return {"path": str(w.path), "loaded_at": w.loaded_at.isoformat() if w.loaded_at else None,
                "last_error": w.last_error, **w.routes.model_dump(mode="json", exclude_none=True, by_alias=True)}

    def admin_engines(self) -> dict:
        return {"engines": [{"url": e.root_url, "healthy": e.healthy, "base": e.base_name,
                             "inflight": e.inflight, "loaded": list(e.loaded), "in_use": dict(e.in_use),
                             "loads_total": e.loads_total, "unloads_total": e.unloads_total}
                            for e in self.pool.engines]}


def create_app(gateway: Gateway) -> FastAPI:
    """The FastAPI app around one :class:`Gateway`."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await gateway.start()
        yield
        await gateway.stop()

    app = FastAPI(title="lorafleet gateway", version="0.1.0", lifespan=lifespan)
    app.state.gateway = gateway

    @app.exception_handler(ServingError)
    async def _serving_error(_request: Request, err: ServingError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.error_type, err.param, err.code),
                            status_code=err.status_code, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind), status_code=err.status_code)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await gateway.forward(request, "/v1/chat/completions", "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await gateway.forward(request, "/v1/completions", "completion")

    @app.get("/v1/models")
    async def models() -> dict:
        return gateway.models()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = gateway.pool.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        for e in gateway.pool.engines:
            gateway.metrics.adapters_loaded.labels(e.root_url).set(len(e.loaded))
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/routes")
    async def admin_routes() -> dict:
        return gateway.admin_routes()

    @app.get("/admin/engines")
    async def admin_engines() -> dict:
        return gateway.admin_engines()

    return app
