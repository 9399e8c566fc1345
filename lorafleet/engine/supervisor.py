"""Keep a local vLLM engine running: restart it with backoff when it dies or hangs.

An engine is restarted when its process exits, and when it is alive but hung: its
``/health`` has not answered 200 for ``restart_unhealthy_after_s`` in a row (a SIGSTOPped
or deadlocked server). The default is conservative: a busy engine on a saturated 2-core
machine was seen answering ``/health`` in 2.7-14 s while it served perfectly well, so one
slow probe, or several, never restarts it; only 25 s without one good answer does (probes every
5 s, each allowed 15 s, so an engine that answers at all keeps resetting the clock).

A hung engine's whole process group is killed with SIGKILL (it would not act on SIGTERM);
an exited one's leftovers are stopped. With an ``on_restart`` callback the new engine starts
on a fresh port (a hung process may still hold the old one, and vLLM's engine-core child
holds the listening socket it inherited) and the callback is told ``(old_root_url,
new_root_url)`` once the new engine is ready, so a gateway can move its traffic without a
restart. Without a callback the engine keeps its URL, the only one its clients know.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pydantic import Field

from lorafleet.core.config import ConfigModel
from lorafleet.engine.errors import EngineError
from lorafleet.engine.vllm import LocalEngine

__all__ = ["EngineSupervisor", "SupervisorConfig", "RestartCallback"]

log = logging.getLogger("lorafleet.supervisor")

# (old_root_url, new_root_url): called from the supervisor's thread once a restarted engine is ready
RestartCallback = Callable[[str, str], None]


class SupervisorConfig(ConfigModel):
    """How the supervisor watches and restarts its engine."""

    min_backoff_s: float = Field(default=1.0, ge=0, description="Wait before the first restart attempt.")
    max_backoff_s: float = Field(default=30.0, ge=0, description="Longest wait between failed restart attempts "
                                                                 "(the wait doubles after each failure).")
    stable_after_s: float = Field(default=60.0, ge=0, description="An engine up this long resets the backoff.")
    check_interval_s: float = Field(default=0.5, gt=0, description="How often the process is checked for exit.")
    health_interval_s: float = Field(default=5.0, gt=0, description="How often /health is probed while the "
                                                                    "process is alive.")
    health_timeout_s: float = Field(default=15.0, gt=0, description="Longest wait for one /health answer "
                                                                    "(a saturated engine took up to 14 s); at "
                                                                    "most restart_unhealthy_after_s.")
    restart_unhealthy_after_s: float | None = Field(
        default=25.0, gt=0,
        description="Restart an engine that is alive but whose /health has not answered 200 for this long "
                    "(a hung engine); None: only restart engines that exit.")


class EngineSupervisor:
    """Starts ``engine``, then watches it from a daemon thread and restarts it when it exits or
    hangs (see the module docstring).

    Backoff doubles from ``min_backoff_s`` to ``max_backoff_s`` between failed starts and
    resets once the engine has stayed up for ``stable_after_s``. Config fields may also be
    given as keyword arguments. Restarts run in the supervisor's thread, which stops the engine
    itself before it ends (the engine's parent-death signal follows the thread that started it).
    """

    def __init__(self, engine: LocalEngine, config: SupervisorConfig | None = None,
                 on_restart: RestartCallback | None = None, **fields: float | None) -> None:
        if config is not None and fields:
            raise TypeError("give either config or its fields as keyword arguments, not both")
        self.engine = engine
        self.config = config or SupervisorConfig.from_mapping(fields, source="EngineSupervisor")
        self.on_restart = on_restart
        self.restarts = 0
        self.last_restart_reason: str | None = None
        self.last_restart_started_at: float | None = None  # time.monotonic() when the last restart began
        self._announced_url: str | None = None  # the URL the callback's side knows
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.engine.start()
        self._announced_url = self.engine.root_url
        self._thread = threading.Thread(target=self._watch, name="engine-supervisor", daemon=True)
        self._thread.start()

    # -- the watch loop ---------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            self._loop()
        finally:
            if self._stop.is_set():
                self.engine.stop()

    def _loop(self) -> None:
        c = self.config
        backoff = c.min_backoff_s
        up_since = healthy_at = next_probe = time.monotonic()
        while not self._stop.wait(c.check_interval_s):
            try:
                reason, hung = self._problem(healthy_at)
                now = time.monotonic()
                if reason is None:
                    if now >= next_probe:
                        next_probe = now + c.health_interval_s
                        if self._probe_ok():
                            healthy_at = time.monotonic()
                    if now - up_since > c.stable_after_s:
                        backoff = c.min_backoff_s
                    continue
                log.error("engine %s %s; restarting in %.0fs", self.engine.root_url, reason, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(max(backoff, c.min_backoff_s) * 2, c.max_backoff_s)  # until it stays up
                self._restart(reason, hung)
                up_since = healthy_at = next_probe = time.monotonic()
            except EngineError as err:
                log.error("engine restart failed: %s", err)
            except Exception:  # noqa: BLE001 - the thread must live: the engine dies with it
                log.exception("engine supervisor: unexpected error (still watching)")

    def _problem(self, healthy_at: float) -> tuple[str | None, bool]:
        """Why the engine must be restarted now, and whether it is hung (alive); (None, False) if not."""
        if not self.engine.alive():
            code = self.engine.proc.returncode if self.engine.proc else None
            return f"exited (code {code})", False
        limit = self.config.restart_unhealthy_after_s
        unhealthy_for = time.monotonic() - healthy_at
        if limit is not None and unhealthy_for >= limit:
            return f"is alive but /health has not answered for {unhealthy_for:.0f}s (hung)", True
        return None, False

    def _probe_ok(self) -> bool:
        c = self.config
        return self.engine.healthy(timeout_s=min(c.health_timeout_s, c.restart_unhealthy_after_s or c.health_timeout_s))

    def _restart(self, reason: str, hung: bool) -> None:
        self.last_restart_reason = reason
        self.last_restart_started_at = time.monotonic()
        if hung:
            self.engine.kill()
        else:
            self.engine.stop()
        if self.on_restart is not None:
            self.engine.use_fresh_port()
        self.engine.start(wait=False)
        self.engine.wait_ready(cancel=self._stop)
        if self._stop.is_set():
            return
        self.restarts += 1
        log.warning("engine restarted on %s after it %s (%d restarts so far)", self.engine.root_url, reason,
                    self.restarts)
        new_url = self.engine.root_url
        if self.on_restart is not None and new_url != self._announced_url:
            old_url, self._announced_url = self._announced_url, new_url
            try:
                self.on_restart(old_url, new_url)
            except Exception:  # noqa: BLE001 - a failing listener must not stop the supervision
                log.exception("engine supervisor: on_restart(%s, %s) failed", old_url, new_url)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.engine.config.start_timeout_s)
        self.engine.stop()
