"""Keep the gateway's routes in step with the routes file, rejecting bad edits.

The file is polled (stat signature: inode, size, mtime) every ``interval_s``; a changed
file is parsed, validated and prepared (``prepare`` checks that every version exists and
builds per-route state such as schema validators), then swapped in as one object. An
invalid file is logged with its reason and the last good routes stay in force. So is a file
that is empty or missing while routes are in force (a truncated write, not an intent: an
explicit ``routes: {}`` removes every route).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorafleet.core.errors import LorafleetError
from lorafleet.serving.routes import RoutesFile

__all__ = ["RoutesWatcher", "Prepare"]

log = logging.getLogger("lorafleet.gateway")

# Validates routes beyond their syntax (raising with a message) and returns derived state.
Prepare = Callable[[RoutesFile], Any]


class RoutesWatcher:
    def __init__(self, path: Path, prepare: Prepare | None = None,
                 on_reload: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.prepare = prepare or (lambda _routes: None)
        self.on_reload = on_reload or (lambda _result: None)
        self.state: tuple[RoutesFile, Any] = (RoutesFile(), self.prepare(RoutesFile()))
        self.loaded_at: datetime | None = None
        self.last_error: str | None = None
        self._signature: tuple | None = None

    @property
    def routes(self) -> RoutesFile:
        return self.state[0]

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def poll(self) -> bool:
        """Reload if the file changed; return True when new routes were applied."""
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            text = self.path.read_text(encoding="utf-8") if signature is not None else ""
            if self.routes.routes and not _has_content(text):
                raise ValueError(f"{self.path} is {'missing' if signature is None else 'empty'} (truncated?); "
                                 "write `routes: {}` to remove every route")
            routes = RoutesFile.parse_text(text, str(self.path))
            derived = self.prepare(routes)
        except (LorafleetError, OSError, ValueError) as err:
            self.last_error = str(err)
            log.error("routes file rejected, keeping the last good routes: %s", err)
            self.on_reload("rejected")
            return False
        self.state = (routes, derived)
        self.loaded_at = datetime.now(UTC)
        self.last_error = None
        log.info("routes applied from %s: %s", self.path, ", ".join(routes.routes) or "(none)")
        self.on_reload("applied")
        return True

    async def watch(self, interval_s: float = 0.25) -> None:
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(interval_s)


def _has_content(text: str) -> bool:
    """Anything but blank lines and comments."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())
