"""What the gateway records about each request: metrics, drift windows, embedding samples,
and the opt-in request log; and the gauges a ``/metrics`` scrape refreshes.

Nothing here blocks the event loop or fails a scrape: the request log is written by a
buffered background writer (a bounded buffer; lines over it are dropped and counted), and a
version's training reference (for drift) is looked up by a background task, never inside a
scrape; a lookup that fails (version removed, S3 down) is remembered as a miss and retried
after ``reference_retry_s`` (the gateway's ``drift_reference_retry_s``). Drift windows and cached references of versions the routes no
longer name are forgotten at the next scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from lorafleet.serving.drift import DriftMonitor
from lorafleet.serving.exchange import Outcome
from lorafleet.serving.guardrails import RouteGuard
from lorafleet.serving.metrics import GatewayMetrics
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.targeting import Target
from lorafleet.serving.tenants import Tenant

__all__ = ["Accounting", "RequestLog", "Reference", "Centroid", "REFERENCE_RETRY_S"]

log = logging.getLogger("lorafleet.gateway")

# version -> {feature: (edges, counts)} of its training fingerprint, or None
Reference = Callable[[str], Awaitable[dict | None]]
# version -> the embedding centroid of its training prompts, or None
Centroid = Callable[[str], Awaitable[list[float] | None]]
REFERENCE_RETRY_S = 30.0


class RequestLog:
    """Appends JSON lines to a file from a background task: ``write`` never blocks (the file
    is written and flushed in a thread, a batch at a time); beyond ``max_lines`` waiting, lines
    are dropped and ``on_drop`` is told. ``stop`` writes what is left."""

    def __init__(self, path: Path, max_lines: int = 10_000, on_drop: Callable[[], None] = lambda: None) -> None:
        self.path, self.max_lines, self.on_drop = path, max_lines, on_drop
        self._lines: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._file = None

    async def start(self) -> None:
        def open_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a", encoding="utf-8")

        self._file = await asyncio.to_thread(open_file)
        self._task = asyncio.create_task(self._run())

    def write(self, line: dict) -> None:
        if len(self._lines) >= self.max_lines:
            self.on_drop()
            return
        self._lines.append(json.dumps(line))
        self._wake.set()

    async def _flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines and self._file is not None:
            text = "\n".join(lines) + "\n"
            await asyncio.to_thread(lambda: (self._file.write(text), self._file.flush()))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None


class Accounting:
    """Metrics, drift and the request log of one gateway."""

    def __init__(self, metrics: GatewayMetrics, routes: Callable[[], RoutesFile], engines: Callable[[], list],
                 drift: DriftMonitor | None, reference: Reference | None, embedding_drift=None,
                 centroid: Centroid | None = None, request_log: Path | None = None,
                 log_prompts: bool = False, reference_retry_s: float = REFERENCE_RETRY_S) -> None:
        self.metrics, self._routes, self._engines = metrics, routes, engines
        self.reference_retry_s = reference_retry_s
        self.drift, self.reference = drift, reference
        self.embedding_drift, self.centroid = embedding_drift, centroid
        self.log_prompts = log_prompts
        self.request_log = (RequestLog(request_log, on_drop=metrics.request_log_dropped.inc)
                            if request_log is not None else None)
        self._references: dict[str, dict | None] = {}
        self._reference_retry: dict[str, float] = {}  # version -> monotonic time a failed lookup may retry
        self._centroids: dict[str, list[float] | None] = {}
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.request_log is not None:
            await self.request_log.start()
        if self.embedding_drift is not None:
            self.embedding_drift.start()

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.embedding_drift is not None:
            await asyncio.to_thread(self.embedding_drift.stop)
        if self.request_log is not None:
            await self.request_log.stop()

    def _background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- per request ------------------------------------------------------------------------
    def record(self, target: Target, tenant: Tenant, status: int, started: float, outcome: Outcome | None,
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
                self._want_reference(target.version)
            if self.embedding_drift is not None and target.version is not None and status == 200:
                self._sample_prompt(target, prompt)
        if self.request_log is not None:
            line = {"ts": time.time(), "route": target.route, "version": target.version_label,
                    "variant": target.variant, "tenant": tenant.name, "status": status,
                    "prompt_tokens": outcome.prompt_tokens if outcome else None,
                    "completion_tokens": outcome.completion_tokens if outcome else None,
                    "validator": (reason or "ok") if guard is not None and guard.validator else None,
                    "latency_s": round(latency, 4)}
            if self.log_prompts:
                line["prompt"] = prompt
            self.request_log.write(line)

    def _sample_prompt(self, target: Target, prompt) -> None:
        """Offer 1 in N prompts of a version with a training centroid to the embedding worker."""
        from lorafleet.embedding.minilm import prompt_text

        sampler, version = self.embedding_drift, target.version
        if version not in self._centroids:
            self._centroids[version] = None  # looked up once, off the request path
            self._background(self._lookup_centroid(version))
            return
        if self._centroids[version] is not None and sampler.wants_sample():
            sampler.offer(target.route, version, target.variant, prompt_text(prompt))

    async def _lookup_centroid(self, version: str) -> None:
        try:
            self._centroids[version] = await self.centroid(version)
        except Exception as err:  # noqa: BLE001 - an unreadable manifest means no embedding drift for it
            log.warning("no embedding centroid for %s: %s", version, err)

    # -- a scrape ---------------------------------------------------------------------------
    def update_gauges(self) -> None:
        """Refresh the gauges; never raises for a registry problem and never waits on one."""
        m = self.metrics
        for e in self._engines():
            m.adapters_loaded.labels(e.root_url).set(len(e.loaded))
            m.adapter_slots.labels(e.root_url).set(e.max_loaded)
            m.engine_up.labels(e.root_url).set(1 if e.healthy else 0)
        routed = {(name, v) for name, route in self._routes().routes.items() for v in route.versions()}
        versions = {v for _, v in routed}
        if self.embedding_drift is not None:
            for v in [v for v in self._centroids if v not in versions]:
                del self._centroids[v]
            m.drift_embedding_distance.clear()
            for (route, version, variant), value in self.embedding_drift.distances(self._centroids.get).items():
                m.drift_embedding_distance.labels(route, version, variant).set(value)
        if self.drift is None or self.reference is None:
            return
        self.drift.retain(routed)
        for v in [v for v in self._references if v not in versions]:
            del self._references[v]
        for v in [v for v in self._reference_retry if v not in versions]:
            del self._reference_retry[v]
        for version in self.drift.versions():
            self._want_reference(version)
        m.drift_psi.clear()
        for (route, version, feature), value in self.drift.scores(self._references.get).items():
            m.drift_psi.labels(route, version, feature).set(value)

    def _want_reference(self, version: str) -> None:
        """Start a background lookup of ``version``'s reference unless it is known, under way, or
        failed less than ``reference_retry_s`` ago."""
        if self.reference is None or version in self._references:
            return
        now = time.monotonic()
        if self._reference_retry.get(version, 0.0) <= now:
            self._reference_retry[version] = now + self.reference_retry_s  # one lookup at a time per version
            self._background(self._lookup_reference(version))

    async def _lookup_reference(self, version: str) -> None:
        try:
            ref = await self.reference(version)
        except Exception as err:  # noqa: BLE001 - removed by gc, S3 down: no drift now, a new try later
            self.metrics.reference_lookups.labels("failed").inc()
            log.warning("no training reference for %s (retry in %.0fs): %s", version, self.reference_retry_s, err)
            return
        self.metrics.reference_lookups.labels("ok" if ref is not None else "missing").inc()
        self._references[version] = ref
