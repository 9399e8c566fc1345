"""Keep the gateway's routes in step with the routes document, rejecting bad edits.

The document (:mod:`~lorafleet.serving.routes_source`: a file, a mounted ConfigMap, or one object
in the registry's store) is polled by its signature (a file's inode, size and mtime; an
object's ETag) every ``interval_s``; a changed document is parsed, validated and prepared (``prepare`` checks that every version exists and
builds per-route state such as schema validators), then swapped in as one object. An
invalid file is logged with its reason and the last good routes stay in force. So is a file
that is empty or missing while routes are in force (a truncated write, not an intent: an
explicit ``routes: {}`` removes every route).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.routes_source import RoutesSource, as_source

__all__ = ["RoutesWatcher", "Prepare"]

log = logging.getLogger("lorafleet.gateway")

# Validates routes beyond their syntax (raising with a message) and returns derived state.
Prepare = Callable[[RoutesFile], Any]


class RoutesWatcher:
    def __init__(self, source: RoutesSource | Path, prepare: Prepare | None = None,
                 on_reload: Callable[[str], None] | None = None) -> None:
        self.source = as_source(source)
        self.path = self.source.name
        self.prepare = prepare or (lambda _routes: None)
        self.on_reload = on_reload or (lambda _result: None)
        self.state: tuple[RoutesFile, Any] = (RoutesFile(), self.prepare(RoutesFile()))
        self.loaded_at: datetime | None = None
        self.last_error: str | None = None
        self._signature: tuple | None = None

    @property
    def routes(self) -> RoutesFile:
        return self.state[0]

    def poll(self) -> bool:
        """Reload if the document changed; return True when new routes were applied."""
        try:
            signature = self.source.signature()
        except Exception as err:  # noqa: BLE001 - a store that is down: keep the last good routes
            self.last_error = f"{self.path}: cannot be read ({err})"
            log.error("routes document unreadable, keeping the last good routes: %s", err)
            return False
        if signature == self._signature:
            return False
        text: str | None = None
        decode_error: UnicodeDecodeError | None = None
        try:
            text = self.source.read() if signature is not None else ""
        except UnicodeDecodeError as err:  # the bytes are there but are not text: a bad edit, rejected below
            decode_error = err
        except Exception as err:  # noqa: BLE001 - read again on the next poll
            self.last_error = f"{self.path}: cannot be read ({err})"
            log.error("routes document unreadable, keeping the last good routes: %s", err)
            return False
        self._signature = signature
        try:
            if text is None:
                raise ValueError(f"{self.path} is not UTF-8 text ({decode_error})")
            if self.routes.routes and not _has_content(text):
                raise ValueError(f"{self.path} is {'missing' if signature is None else 'empty'} (truncated?); "
                                 "write `routes: {}` to remove every route")
            routes = RoutesFile.parse_text(text, str(self.path))
            derived = self.prepare(routes)
        except Exception as err:  # noqa: BLE001 - any bad document keeps the last good routes
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
