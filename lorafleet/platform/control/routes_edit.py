"""Every control-plane change to the routes file: one locked read-modify-write, written
atomically, recorded with who, when, why, before and after.

The routes file stays the one place that decides traffic; this module is how the CLI and
the canary analysis change it. A person with an editor can change it too: the gateway
applies whatever valid file it finds.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from pydantic import ValidationError

from lorafleet.core.config import ConfigError, format_validation_error
from lorafleet.core.fsutil import atomic_write_text
from lorafleet.core.users import current_user
from lorafleet.platform.errors import PlatformError
from lorafleet.serving.routes import Route, RoutesFile

__all__ = ["RouteChange", "edit_route", "history", "default_actor"]


def default_actor() -> str:
    """Who a routes change is recorded as (the OS user)."""
    return current_user()


@dataclass
class RouteChange:
    route: str
    before: Route | None
    after: Route | None
    diff: str
    actor: str
    reason: str


def _history_path(routes_file: Path) -> Path:
    return routes_file.with_name(routes_file.stem + ".history.jsonl")


def history(routes_file: Path, route: str | None = None) -> list[dict]:
    """Recorded changes, oldest first (only those made through this module)."""
    path = _history_path(routes_file)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in entries if route is None or e["route"] == route]


def edit_route(routes_file: Path, name: str, change: Callable[[Route | None], Route | None], *,
               actor: str, reason: str, kind: str) -> RouteChange:
    """Apply ``change`` to route ``name`` under a lock; write the file atomically and record it.

    ``kind`` names the change in the history (canary, step, full, rollback).
    ``change`` gets the current route (or None) and returns the new one (None removes it);
    it raises PlatformError to refuse, leaving the file untouched. An unreadable routes file
    is never overwritten.
    """
    with FileLock(str(routes_file) + ".lock", timeout=30):
        try:
            current = RoutesFile.load(routes_file)
        except ConfigError as err:
            raise PlatformError(f"the routes file is invalid, fix it first: {err}") from None
        old_text = routes_file.read_text(encoding="utf-8") if routes_file.exists() else ""
        before = current.routes.get(name)
        after = change(before.model_copy(deep=True) if before else None)
        routes = dict(current.routes)
        if after is None:
            routes.pop(name, None)
        else:
            try:
                routes[name] = Route.model_validate(after.model_dump(by_alias=True))
            except ValidationError as err:
                raise PlatformError(format_validation_error(err, f"route {name}")) from None
        new = RoutesFile(routes=routes)
        new_text = new.dump()
        diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                            fromfile=f"{routes_file} (before)", tofile=f"{routes_file} (after)"))
        atomic_write_text(routes_file, new_text)
        record = {"at": datetime.now(UTC).isoformat(), "route": name, "kind": kind, "actor": actor, "reason": reason,
                  "before": before.model_dump(mode="json", by_alias=True, exclude_none=True) if before else None,
                  "after": after.model_dump(mode="json", by_alias=True, exclude_none=True) if after else None}
        with open(_history_path(routes_file), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return RouteChange(name, before, after, diff, actor, reason)
