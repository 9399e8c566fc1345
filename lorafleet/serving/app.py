"""The gateway's HTTP app: the OpenAI endpoints, health, metrics and admin views around one
:class:`~lorafleet.serving.gateway.Gateway`, with every error in OpenAI's shape.

The request bodies in the published OpenAPI document are the pydantic models the gateway
validates with (:mod:`~lorafleet.serving.protocol`); the handlers read and check the body
themselves (bounded, and faster than FastAPI's body parameters).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorafleet.serving.errors import AdminOnly, ServingError, error_body
from lorafleet.serving.protocol import openapi_schemas

if TYPE_CHECKING:
    from lorafleet.serving.gateway import Gateway

__all__ = ["create_app"]

log = logging.getLogger("lorafleet.gateway")


def _error_response(err: ServingError) -> JSONResponse:
    return JSONResponse(error_body(err.message, err.error_type, err.param, err.code),
                        status_code=err.status_code, headers=err.headers)


def uvicorn_config(gateway: Gateway, host: str, port: int, **kwargs) -> uvicorn.Config:
    """How uvicorn serves the gateway's app: quiet logs, and client keep-alive from the gateway's config."""
    return uvicorn.Config(create_app(gateway), host=host, port=port, log_level="warning", access_log=False,
                          timeout_keep_alive=gateway.config.keep_alive_s, **kwargs)


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
    bodies, components = openapi_schemas()

    def body_schema(kind: str) -> dict:
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": bodies[kind]}}}}

    def admin(request: Request) -> None:
        if not gateway.tenant(request).admin:
            raise AdminOnly()

    @app.exception_handler(ServingError)
    async def _serving_error(_request: Request, err: ServingError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, err: Exception) -> JSONResponse:  # never a bare 500
        log.error("unexpected failure: %r", err)
        return JSONResponse(error_body(f"The gateway failed: {type(err).__name__}", "server_error",
                                       code="internal_error"), status_code=500)

    @app.post("/v1/chat/completions", openapi_extra=body_schema("chat"))
    async def chat_completions(request: Request) -> Response:
        return await gateway.forward(request, "chat")

    @app.post("/v1/completions", openapi_extra=body_schema("completion"))
    async def completions(request: Request) -> Response:
        return await gateway.forward(request, "completion")

    @app.post("/v1/responses", openapi_extra=body_schema("responses"))
    async def responses(request: Request) -> Response:
        return await gateway.forward(request, "responses")

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        return gateway.models(gateway.tenant(request))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = gateway.pool.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        try:
            gateway.update_gauges()
        except Exception:  # a gauge that cannot be refreshed must not fail the scrape
            log.exception("refreshing gauges failed; serving the last values")
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/routes")
    async def admin_routes(request: Request) -> dict:
        admin(request)
        return gateway.admin_routes()

    @app.get("/admin/engines")
    async def admin_engines(request: Request) -> dict:
        admin(request)
        return gateway.admin_engines()

    def openapi() -> dict:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
