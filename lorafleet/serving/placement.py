"""Where one request runs: an engine, with its adapter version loaded there.

The request is in flight on its engine from the moment the engine is picked (the caller
releases it, once), so that requests arriving during a load see that engine as busy. A
canary that cannot be loaded falls back to stable, and is not tried again for
``failed_load_retry_s`` (each fallback is counted for canary analysis). A version whose
files fail their integrity or compatibility check is a non-retryable error
(:class:`AdapterCorrupted`), not a 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lorafleet.serving.engines import Engine, EnginePool
from lorafleet.serving.errors import AdapterLoadFailed
from lorafleet.serving.metrics import GatewayMetrics
from lorafleet.serving.routes import RoutesFile, is_base_ref
from lorafleet.serving.targeting import Target

__all__ = ["Placement"]

log = logging.getLogger("lorafleet.gateway")
FAILED_LOADS_MAX = 1024


class Placement:
    def __init__(self, pool: EnginePool, metrics: GatewayMetrics, routes: Callable[[], RoutesFile],
                 failed_load_retry_s: float) -> None:
        self.pool, self.metrics, self._routes = pool, metrics, routes
        self.failed_load_retry_s = failed_load_retry_s
        self._failed_loads: dict[str, float] = {}  # version -> monotonic time of the next try

    async def prepare(self, target: Target) -> tuple[Target, Engine]:
        """Pick an engine and load the version there; the caller must ``pool.release`` it once."""
        route = self._routes().routes.get(target.route)
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
            self.metrics.adapter_cache.labels(engine.root_url, "miss").inc()
            self.metrics.adapter_loads.labels(engine.root_url, "failed").inc()
            if len(self._failed_loads) >= FAILED_LOADS_MAX:
                self._failed_loads.clear()
            self._failed_loads[target.version] = time.monotonic() + self.failed_load_retry_s
            if target.variant != "canary" or route is None:
                raise err.final() from err
            log.error("canary failed to load, serving stable instead (no new try for %.0fs): %s",
                      self.failed_load_retry_s, err)
            return await self._serve_stable_instead(target, route)
        self.metrics.adapter_cache.labels(engine.root_url, "hit" if already else "miss").inc()
        if not already:
            self.metrics.adapter_loads.labels(engine.root_url, "ok").inc()
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
