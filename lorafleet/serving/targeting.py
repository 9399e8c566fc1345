"""Which version answers one request: the route's variant (sticky), the base, or an admin's pin.

A route's variant comes from :func:`lorafleet.serving.router.choose`; a route the tenant may
not call is reported as unknown (its existence is not leaked). A pin (the
``X-Lorafleet-Version`` header, used by promote's golden-set run) needs an admin and names a
version that exists; that lookup reads the registry (S3 LIST/GET), so it runs in a thread,
and a version found is remembered for ``PIN_CACHE_S`` (versions are immutable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from lorafleet.core.errors import LorafleetError
from lorafleet.serving.errors import AdminOnly, BadRequest, ModelNotFound
from lorafleet.serving.router import choose
from lorafleet.serving.routes import RoutesFile, is_base_ref, parse_version_ref
from lorafleet.serving.tenants import Tenant

__all__ = ["Target", "Targeting", "VersionCheck", "PIN_CACHE_S", "PIN_CACHE_MAX"]

# name@N -> None when the version exists; raises (LorafleetError, ValueError) otherwise. Blocking.
VersionCheck = Callable[[str], None]
PIN_CACHE_S = 60.0
PIN_CACHE_MAX = 1024


@dataclass(frozen=True, slots=True)
class Target:
    route: str
    version: str | None  # name@N, None for the base model
    variant: str  # stable | canary | base | pinned

    @property
    def version_label(self) -> str:
        return self.version or "base"

    def headers(self) -> dict[str, str]:
        return {"X-Lorafleet-Route": self.route, "X-Lorafleet-Version": self.version_label,
                "X-Lorafleet-Variant": self.variant}


class Targeting:
    """Route, variant and pin choice over the routes in force."""

    def __init__(self, routes: Callable[[], RoutesFile], base_name: Callable[[], str | None],
                 check_version: VersionCheck | None) -> None:
        self._routes, self._base_name, self.check_version = routes, base_name, check_version
        self._known: dict[str, float] = {}  # version -> monotonic time its lookup expires

    def target(self, model: str, key: str | None, tenant: Tenant) -> Target:
        route = self._routes().routes.get(model)
        if route is not None:
            allowed = tenant.may_call(model) and (route.tenants is None or tenant.admin or tenant.name in route.tenants)
            if not allowed:
                raise ModelNotFound(model)  # existence is not leaked to other tenants
            choice = choose(model, route, key)
            return Target(model, None if is_base_ref(choice.version) else choice.version, choice.variant)
        if model == self._base_name() and tenant.may_call(model):
            return Target(model, None, "base")
        raise ModelNotFound(model)

    async def pin(self, target: Target, version: str, tenant: Tenant) -> Target:
        if not tenant.admin:
            raise AdminOnly("The X-Lorafleet-Version header")
        try:
            parse_version_ref(version)
            await self._check(version)
        except (ValueError, LorafleetError) as err:
            raise BadRequest(f"X-Lorafleet-Version: {err}", param="X-Lorafleet-Version",
                             code="unknown_version") from None
        return Target(target.route, version, "pinned")

    async def _check(self, version: str) -> None:
        if self.check_version is None:
            return
        now = time.monotonic()
        if self._known.get(version, 0.0) > now:
            return
        await asyncio.to_thread(self.check_version, version)  # a registry read: never on the loop
        if len(self._known) >= PIN_CACHE_MAX:
            self._known.clear()
        self._known[version] = now + PIN_CACHE_S
