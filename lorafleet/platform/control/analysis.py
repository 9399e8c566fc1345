"""Automatic canary analysis: compare canary with stable on LLM signals, then step up,
promote, or roll back, by writing the routes file (Flagger / Argo Rollouts, for adapters).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lorafleet.platform.control.observe import Scrape, VariantFigures, figures, scrape
from lorafleet.serving.routes import Analysis, Route

__all__ = ["Verdict", "judge", "CanaryWatcher", "AnalysisLoop"]

log = logging.getLogger("lorafleet.canary")


@dataclass
class Verdict:
    decision: Literal["wait", "pass", "fail"]
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.decision}: " + ("; ".join(self.reasons) if self.reasons else "all checks passed")


def judge(stable: VariantFigures, canary: VariantFigures, cfg: Analysis) -> Verdict:
    """Pure decision over one interval's figures."""
    if canary.fallbacks > 0:  # decisive at any count: the canary version cannot even be loaded
        return Verdict("fail", [f"{canary.fallbacks:.0f} canary requests fell back to stable: "
                                f"{canary.version} could not be loaded (see the gateway log)"])
    if stable.requests < cfg.min_requests or canary.requests < cfg.min_requests:
        return Verdict("wait", [f"need {cfg.min_requests} requests per variant "
                                f"(stable {stable.requests:.0f}, canary {canary.requests:.0f})"])
    reasons = []
    d_err = canary.error_rate - stable.error_rate
    if d_err > cfg.max_error_rate_increase:
        reasons.append(f"error rate {canary.error_rate:.1%} vs stable {stable.error_rate:.1%} "
                       f"(+{d_err:.1%} > {cfg.max_error_rate_increase:.1%})")
    d_schema = canary.schema_failure_rate - stable.schema_failure_rate
    if d_schema > cfg.max_schema_failure_increase:
        reasons.append(f"schema-failure rate {canary.schema_failure_rate:.1%} vs stable "
                       f"{stable.schema_failure_rate:.1%} (+{d_schema:.1%} > {cfg.max_schema_failure_increase:.1%})")
    p95_c, p95_s = canary.latency_quantile_s(0.95), stable.latency_quantile_s(0.95)
    if not math.isnan(p95_c) and not math.isnan(p95_s) and p95_s > 0 and p95_c / p95_s > cfg.max_p95_latency_ratio:
        reasons.append(f"p95 latency {p95_c:.3f}s vs stable {p95_s:.3f}s (x{p95_c / p95_s:.2f} > "
                       f"x{cfg.max_p95_latency_ratio})")
    if canary.drift_psi is not None and canary.drift_psi > cfg.max_drift_psi:
        reasons.append(f"prompt drift PSI {canary.drift_psi:.2f} > {cfg.max_drift_psi}")
    return Verdict("fail", reasons) if reasons else Verdict("pass")


def variant_versions(route: Route) -> dict[str, str]:
    """The version label each variant is counted under in the gateway's metrics."""
    from lorafleet.serving.routes import is_base_ref

    out = {"stable": "base" if is_base_ref(route.stable) else route.stable}
    if route.canary is not None:
        out["canary"] = route.canary.version
    return out


class CanaryWatcher:
    """Judges one route's canary every interval and acts through the given callbacks."""

    def __init__(self, gateway_root_url: str, route_name: str, load_route: Callable[[], Route | None],
                 step_to: Callable[[float, str], None], promote: Callable[[str], None],
                 rollback: Callable[[str], None], say: Callable[[str], None] = print,
                 default: Analysis | None = None) -> None:
        self.url = gateway_root_url
        self.route_name = route_name
        self.load_route = load_route
        self.step_to, self.promote, self.rollback = step_to, promote, rollback
        self.say = say
        self.default = default or Analysis()

    def run(self, max_intervals: int | None = None, sleep: Callable[[float], None] = time.sleep) -> str:
        """Watch until the canary is promoted or rolled back (or ``max_intervals``); return the outcome."""
        before: Scrape | None = scrape(self.url)
        n = 0
        while max_intervals is None or n < max_intervals:
            route = self.load_route()
            if route is None or route.canary is None or route.canary.weight <= 0:
                self.say(f"{self.route_name}: no canary to watch")
                return "none"
            cfg = route.analysis or self.default
            sleep(cfg.interval_s)
            n += 1
            now = scrape(self.url)
            route = self.load_route()
            if route is None or route.canary is None:
                return "none"
            figs = figures(now, before, self.route_name, variant_versions(route))
            verdict = judge(figs["stable"], figs["canary"], cfg)
            self.say(f"{self.route_name} canary {route.canary.version} at {route.canary.weight:g}%: "
                     f"{verdict.summary()}")
            if verdict.decision == "fail":
                self.rollback("automatic canary analysis: " + "; ".join(verdict.reasons))
                return "rolled back"
            if verdict.decision == "pass":
                later = [s for s in cfg.steps if s > route.canary.weight]
                if not later or later[0] >= 100:
                    self.promote("automatic canary analysis: passed every step")
                    return "promoted"
                self.step_to(later[0], f"automatic canary analysis: passed at {route.canary.weight:g}%")
                before = now
            # on "wait" keep accumulating from the same starting scrape
        return "watching"


class _Stopped(Exception):
    pass


class AnalysisLoop:
    """Automatic canary analysis for every route (what `platform serve --canary-analysis` runs).

    Polls the routes file; each route that gets a canary gets its own CanaryWatcher thread,
    which acts through the Promoter (so every decision is one routes-file change with its
    reason in the history and the registry audit log). A routes file that does not parse is
    skipped, as the gateway does: the watchers keep the last good view.
    """

    def __init__(self, gateway_root_url: str, routes_file, promoter, poll_s: float = 2.0,
                 say: Callable[[str], None] = log.info) -> None:
        from lorafleet.serving.routes_source import as_source

        self.url, self.routes, self.promoter = gateway_root_url, as_source(routes_file), promoter
        self.poll_s, self.say = poll_s, say
        self.outcomes: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._watching: dict[str, threading.Thread] = {}
        self._last_good: dict[str, Route] = {}
        self._thread = threading.Thread(target=self._run, name="canary-analysis", daemon=True)

    @classmethod
    def for_home(cls, settings, base: str, gateway_root_url: str, **kw) -> AnalysisLoop:
        """The loop over this home's routes file, acting as actor ``canary-analysis``."""
        from lorafleet.platform.control.promotion import Promoter

        promoter = Promoter(settings, base, actor="canary-analysis")
        return cls(gateway_root_url, promoter.routes, promoter, **kw)

    def start(self) -> AnalysisLoop:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for t in [self._thread, *self._watching.values()]:
            t.join(timeout=timeout_s)

    def _routes(self) -> dict[str, Route]:
        """The routes file's routes; on a file that does not parse (a bad edit, or one in
        progress), the last good ones, as the gateway does."""
        from lorafleet.serving.routes_source import load_routes

        try:
            self._last_good = load_routes(self.routes).routes
        except Exception:  # noqa: BLE001 - keep going on the last good file
            pass
        return self._last_good

    def _route(self, name: str) -> Route | None:
        return self._routes().get(name)

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def _watch(self, name: str) -> None:
        p = self.promoter
        watcher = CanaryWatcher(
            self.url, name, lambda: self._route(name),
            step_to=lambda pct, why: p.step(name, pct, why),
            promote=lambda why: p.full(name, why),
            rollback=lambda why: p.rollback(name, why), say=self.say)
        try:
            outcome = watcher.run(sleep=self._sleep)
        except _Stopped:
            return
        except Exception as exc:  # noqa: BLE001 - one route's failure must not stop the others
            outcome = f"error: {type(exc).__name__}: {exc}"
            self.say(f"{name}: canary analysis stopped: {outcome}")
        self.outcomes.setdefault(name, []).append(outcome)

    def _run(self) -> None:
        from lorafleet.engine.process import answers_ok

        while not answers_ok(f"{self.url}/readyz"):  # the gateway may still be starting its engine
            if self._stop.wait(self.poll_s):
                return
        self.say(f"canary analysis on: watching the canaries in {self.routes.name}")
        while not self._stop.is_set():
            for name, route in self._routes().items():
                busy = self._watching.get(name)
                if route.canary is None or route.canary.weight <= 0 or (busy is not None and busy.is_alive()):
                    continue
                self.say(f"{name}: watching canary {route.canary.version} at {route.canary.weight:g}%")
                t = threading.Thread(target=self._watch, args=(name,), name=f"canary-{name}", daemon=True)
                self._watching[name] = t
                t.start()
            self._stop.wait(self.poll_s)
