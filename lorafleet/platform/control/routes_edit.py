"""Every control-plane change to the routes document: one atomic read-modify-write, recorded
with who, when, why, before and after.

The routes document (:mod:`lorafleet.serving.routes_source`: the home's file, or one object in
the registry's store that N gateways follow) stays the one place that decides traffic; this
module is how the CLI and the canary analysis change it. A person with an editor can change it
too (`platform routes apply`, or the file itself): the gateways apply whatever valid document
they find.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lorafleet.core.config import ConfigError, format_validation_error
from lorafleet.core.users import current_user
from lorafleet.platform.errors import PlatformError
from lorafleet.serving.routes import Route, RoutesFile
from lorafleet.serving.routes_source import RoutesSource, as_source

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


def history(routes: RoutesSource | Path, route: str | None = None) -> list[dict]:
    """Recorded changes, oldest first (only those made through this module)."""
    return [e for e in as_source(routes).history() if route is None or e.get("route") == route]


def edit_route(routes: RoutesSource | Path, name: str, change: Callable[[Route | None], Route | None], *,
               actor: str, reason: str, kind: str) -> RouteChange:
    """Apply ``change`` to route ``name`` atomically and record it.

    ``kind`` names the change in the history (canary, step, full, rollback).
    ``change`` gets the current route (or None) and returns the new one (None removes it);
    it raises PlatformError to refuse, leaving the document untouched. An unreadable routes
    document is never overwritten. ``change`` may run more than once: when another writer
    changed the document meanwhile, it runs again on theirs.
    """
    source = as_source(routes)
    outcome: dict = {}

    def apply(old_text: str) -> tuple[str, dict]:
        try:
            current = RoutesFile.parse_text(old_text, source.name)
        except ConfigError as err:
            raise PlatformError(f"the routes document is invalid, fix it first: {err}") from None
        before = current.routes.get(name)
        after = change(before.model_copy(deep=True) if before else None)
        routes_now = dict(current.routes)
        if after is None:
            routes_now.pop(name, None)
        else:
            try:
                routes_now[name] = after = Route.model_validate(after.model_dump(by_alias=True))
            except ValidationError as err:
                raise PlatformError(format_validation_error(err, f"route {name}")) from None
        new_text = current.model_copy(update={"routes": routes_now}).dump()
        outcome.update(before=before, after=after, old=old_text, new=new_text)
        record = {"route": name, "kind": kind, "actor": actor, "reason": reason,
                  "before": before.model_dump(mode="json", by_alias=True, exclude_none=True) if before else None,
                  "after": after.model_dump(mode="json", by_alias=True, exclude_none=True) if after else None}
        return new_text, record

    source.update(apply)
    diff = "".join(difflib.unified_diff(outcome["old"].splitlines(keepends=True),
                                        outcome["new"].splitlines(keepends=True),
                                        fromfile=f"{source.name} (before)", tofile=f"{source.name} (after)"))
    return RouteChange(name, outcome["before"], outcome["after"], diff, actor, reason)
