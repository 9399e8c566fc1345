"""Keep a local vLLM engine running: restart it with backoff when it dies."""

from __future__ import annotations

import logging
import threading
import time

from lorafleet.engine.vllm import LocalEngine
from lorafleet.engine.errors import EngineError

__all__ = ["EngineSupervisor"]

log = logging.getLogger("lorafleet.supervisor")


class EngineSupervisor:
    """Starts ``engine``, then watches it from a daemon thread and restarts it if it exits.

    Backoff doubles from ``min_backoff_s`` to ``max_backoff_s`` between failed starts and
    resets once the engine has stayed up for ``stable_after_s``.
    """

    def __init__(self, engine: LocalEngine, min_backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 stable_after_s: float = 60.0, check_interval_s: float = 0.5) -> None:
        self.engine = engine
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.check_interval_s = check_interval_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.engine.start()
        self._thread = threading.Thread(target=self._watch, name="engine-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        backoff = self.min_backoff_s
        up_since = time.monotonic()
        while not self._stop.wait(self.check_interval_s):
            if self.engine.alive():
                if time.monotonic() - up_since > self.stable_after_s:
                    backoff = self.min_backoff_s
                continue
            code = self.engine.proc.returncode if self.engine.proc else None
            log.error("engine exited (code %s); restarting in %.0fs", code, backoff)
            if self._stop.wait(backoff):
                return
            try:
                self.engine.stop()
                self.engine.start()
                self.restarts += 1
                up_since = time.monotonic()
                log.warning("engine restarted (%d restarts so far)", self.restarts)
            except EngineError as err:
                log.error("engine restart failed: %s", err)
            backoff = min(backoff * 2, self.max_backoff_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.engine.stop()
