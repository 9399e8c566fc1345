"""`platform promote` and `platform rollback`: checked, recorded, one routes-file change each.

promote REF --canary PCT   the version takes PCT% of its route (a new route starts with the
                           base model as stable: the adapter's first rollout)
promote NAME --full        the canary becomes stable
rollback NAME              canary to 0 (removed); with no canary, stable back to the previous one
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorafleet.core.errors import InputError
from lorafleet.core.names import check_name
from lorafleet.core.settings import Settings
from lorafleet.platform.errors import PlatformError
from lorafleet.platform.control.routes_edit import RouteChange, default_actor, edit_route, history
from lorafleet.serving.routes import Canary, Route, is_base_ref

__all__ = ["Promoter", "parse_percent", "GateCheck"]


def parse_percent(text: str | float) -> float:
    """'5%', '5', 5.0 -> 5.0; anything outside 0-100 is an InputError."""
    raw = str(text).strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        raise InputError("--canary", text, "not a percentage (e.g. 5 or 5%)") from None
    if not 0 <= value <= 100:
        raise InputError("--canary", text, "must be between 0 and 100")
    return value


# (version ref, route) -> None, raising PlatformError when the version must not be promoted there
GateCheck = Callable[[str, str], None]


@dataclass
class Promoter:
    settings: Settings
    base: str
    actor: str = ""
    gate: GateCheck | None = None

    def __post_init__(self) -> None:
        self.actor = self.actor or default_actor()

    @property
    def routes(self):
        """The routes document the settings name (the home's file, or the registry's shared one)."""
        from lorafleet.serving.routes_source import open_routes

        return open_routes(self.settings)

    def _registry(self):
        from lorafleet.registry import open_registry

        return open_registry(self.settings)

    def newest_ref(self) -> str:
        """The newest version pushed to this home's registry (for `promote` without REF)."""
        reg = self._registry()
        versions = [m for name in reg.names() for m in reg.list(name)]
        if not versions:
            raise PlatformError("the registry is empty: train or push an adapter first")
        return max(versions, key=lambda m: m.created_at).ref

    def check_version(self, ref: str):
        """The version exists, was trained on the served base, and fits the engine."""
        from lorafleet.registry import check_compatibility
        from lorafleet.registry.bases import BaseStore

        reg = self._registry()
        manifest = reg.resolve(ref)
        base = BaseStore(self.settings.layout.bases).require(self.base)
        if manifest.base.name != self.base:
            raise PlatformError(f"{manifest.ref} was trained on base {manifest.base.name!r}; "
                                f"the routes serve {self.base!r}")
        check_compatibility(reg.materialize(manifest.ref), base, max_lora_rank=self.settings.engine_max_lora_rank)
        return manifest

    def _alias(self, name: str, alias: str, version: int | None, reason: str) -> None:
        self._registry().set_alias(name, alias, version, actor=self.actor, reason=reason)

    # -- the three changes ----------------------------------------------------------------
    def canary(self, ref: str | None, percent: float, route: str | None = None, reason: str = "",
               force: bool = False) -> RouteChange:
        manifest = self.check_version(ref or self.newest_ref())
        route_name = check_name(route or manifest.name, "--route")
        if self.gate is not None:
            try:
                self.gate(manifest.ref, route_name)
            except PlatformError as err:
                if not force:
                    raise PlatformError(f"{err} (use --force --reason TEXT to promote anyway)") from None
                if not reason:
                    raise InputError("--reason", reason, "--force needs a reason, it goes into the audit log") from None
        why = reason or f"canary {percent:g}%"

        def change(current: Route | None) -> Route:
            if current is None:
                return Route(stable=self.base, canary=Canary(version=manifest.ref, weight=percent))
            if current.stable == manifest.ref:
                raise PlatformError(f"{manifest.ref} is already the stable version of {route_name}")
            current.canary = Canary(version=manifest.ref, weight=percent)
            return current

        result = edit_route(self.routes, route_name, change, actor=self.actor, reason=why, kind="canary")
        self._alias(manifest.name, "canary", manifest.version, why)
        return result

    def step(self, route: str, percent: float, reason: str = "") -> RouteChange:
        """Move the canary's weight (progressive delivery)."""
        def change(current: Route | None) -> Route:
            if current is None or current.canary is None:
                raise PlatformError(f"route {route} has no canary")
            current.canary = Canary(version=current.canary.version, weight=percent)
            return current

        return edit_route(self.routes, route, change, actor=self.actor, reason=reason or f"canary {percent:g}%",
                          kind="step")

    def full(self, route: str, reason: str = "") -> RouteChange:
        why = reason or "promote canary to stable"
        promoted: list[str] = []

        def change(current: Route | None) -> Route:
            if current is None or current.canary is None:
                raise PlatformError(f"route {route} has no canary to promote")
            promoted.append(current.canary.version)
            return Route.model_validate({**current.model_dump(by_alias=True), "stable": current.canary.version,
                                         "canary": None})

        result = edit_route(self.routes, route, change, actor=self.actor, reason=why, kind="full")
        name, _, version = promoted[0].partition("@")
        self._alias(name, "stable", int(version), why)
        self._alias(name, "canary", None, why)
        return result

    def rollback(self, route: str, reason: str = "") -> RouteChange:
        why = reason or "rollback"
        undone: list[tuple[str, str | None]] = []

        def change(current: Route | None) -> Route:
            if current is None:
                raise PlatformError(f"route {route} does not exist: nothing to roll back")
            if current.canary is not None:
                undone.append(("canary", current.canary.version))
                current.canary = None
                return current
            previous = self._previous_stable(route, current.stable)
            if previous is None:
                raise PlatformError(f"route {route} has no canary and no earlier stable version: nothing to roll back")
            undone.append(("stable", previous))
            current.stable = previous
            return current

        result = edit_route(self.routes, route, change, actor=self.actor, reason=why, kind="rollback")
        kind, value = undone[0]
        if kind == "canary":
            self._alias(value.partition("@")[0], "canary", None, why)
        elif not is_base_ref(value):
            name, _, version = value.partition("@")
            self._alias(name, "stable", int(version), why)
        return result

    def _previous_stable(self, route: str, stable: str) -> str | None:
        """The stable that the last promotion *to* ``stable`` replaced (a stack: rollbacks pop it)."""
        for entry in reversed(history(self.routes, route)):
            before, after = entry.get("before") or {}, entry.get("after") or {}
            if entry.get("kind") == "full" and after.get("stable") == stable and before.get("stable") != stable:
                return before.get("stable")
        return None
