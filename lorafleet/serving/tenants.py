"""Tenants and API keys: key -> tenant -> allowed routes, with a per-key rate limit.

The keys file (YAML) stores only sha256 hashes of keys:

    admin_keys: ["sha256:..."]          # may call /admin/* and every route
    tenants:
      acme:
        keys: ["sha256:..."]
        routes: [support-intents]      # or ["*"] for every route
        rate_limit_rps: 20             # optional, token bucket with a burst of 2x

`platform keys add TENANT` makes a key, prints it once and stores its hash. Keys never
appear in logs: the gateway logs tenant names only.

Where the limit is counted is the rate limiter's business (serving/ratelimit.py): in this
process by default, or in Redis shared by every gateway replica with
``LORAFLEET_RATE_LIMIT_STORAGE``. :meth:`Authenticator.admit` (async) counts a request in
that limiter: the gateway calls it for inference requests. :meth:`Authenticator.authenticate`
(sync, for /v1/models and /admin) counts in this process only.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from lorafleet.core.config import ConfigModel
from lorafleet.core.names import check_name
from lorafleet.serving.errors import ServingError
from lorafleet.serving.ratelimit import LocalRateLimiter, RateLimiter, open_rate_limiter

__all__ = ["KeysFile", "TenantConfig", "Tenant", "Authenticator", "hash_key", "new_key",
           "Unauthorized", "RateLimited", "OPEN", "OPEN_REMOTE", "is_loopback"]

KEY_PREFIX = "lf-"


class Unauthorized(ServingError):
    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self, message: str = "Incorrect or missing API key.") -> None:
        super().__init__(message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class RateLimited(ServingError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("Rate limit reached for this API key.", code="rate_limit_exceeded",
                         headers={"Retry-After": str(max(1, round(retry_after_s + 0.5)))})


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


class TenantConfig(ConfigModel):
    keys: list[str] = Field(default_factory=list, description="sha256 hashes of the tenant's API keys.")
    routes: list[str] = Field(default_factory=lambda: ["*"], description="Routes it may call; '*' for all.")
    rate_limit_rps: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Requests per second per key (burst 2x); shared by every gateway replica when "
                    "LORAFLEET_RATE_LIMIT_STORAGE names a Redis.")


class KeysFile(ConfigModel):
    admin_keys: list[str] = Field(default_factory=list, description="sha256 hashes of admin keys.")
    tenants: dict[str, TenantConfig] = Field(default_factory=dict, description="Tenant name -> its keys and routes.")

    def add_key(self, tenant: str, routes: list[str] | None = None) -> str:
        check_name(tenant, "tenant")
        key = new_key()
        entry = self.tenants.setdefault(tenant, TenantConfig())
        entry.keys = [*entry.keys, hash_key(key)]
        if routes:
            entry.routes = routes
        return key


@dataclass(frozen=True)
class Tenant:
    name: str
    routes: frozenset[str]
    admin: bool = False

    def may_call(self, route: str) -> bool:
        return self.admin or "*" in self.routes or route in self.routes


OPEN = Tenant("open", frozenset({"*"}), admin=True)  # open mode, a caller on this machine
OPEN_REMOTE = Tenant("open", frozenset({"*"}))  # open mode, a caller elsewhere: every route, no admin


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address)."""
    import ipaddress

    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class Authenticator:
    """Looks a bearer key up by its hash; None keys file means the gateway runs open.

    ``limiter`` counts :meth:`admit`'s requests (default: this process's token buckets, the
    same ones :meth:`authenticate` uses)."""

    def __init__(self, keys: KeysFile | None, limiter: RateLimiter | None = None) -> None:
        self.open = keys is None
        self._by_hash: dict[str, tuple[Tenant, float | None]] = {}
        self.local = limiter if isinstance(limiter, LocalRateLimiter) else LocalRateLimiter()
        self.limiter = limiter or self.local
        if keys is not None:
            for h in keys.admin_keys:
                self._by_hash[h] = (Tenant("admin", frozenset({"*"}), admin=True), None)
            for name, t in keys.tenants.items():
                for h in t.keys:
                    self._by_hash[h] = (Tenant(name, frozenset(t.routes)), t.rate_limit_rps)

    @classmethod
    def from_file(cls, path: Path | None, rate_limit_storage: str | None = None,
                  on_storage_error: Callable[[], None] | None = None) -> Authenticator:
        """The keys file at ``path`` (None: open mode) with its limits counted where
        ``rate_limit_storage`` says (None: this process; a bad URL raises InputError naming
        LORAFLEET_RATE_LIMIT_STORAGE). ``on_storage_error`` is called for each request the
        shared storage could not count."""
        limiter = open_rate_limiter(rate_limit_storage, on_error=on_storage_error)
        return cls(KeysFile.from_yaml(path) if path is not None else None, limiter)

    def _identify(self, authorization: str | None, client_host: str | None) -> tuple[Tenant, str, float | None]:
        if self.open:
            return (OPEN if is_loopback(client_host) else OPEN_REMOTE), "", None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = hash_key(authorization[7:].strip())
        found = self._by_hash.get(digest)  # keys are looked up by hash; the key itself is never stored
        if found is None:
            raise Unauthorized()
        return found[0], digest, found[1]

    def authenticate(self, authorization: str | None, client_host: str | None = None) -> Tenant:
        """The caller's tenant, its request counted in this process's bucket for the key
        (raises RateLimited over the limit). With no keys file every caller may call every
        route, but only a caller on loopback (``client_host`` 127.0.0.0/8 or ::1) is an admin."""
        tenant, digest, rps = self._identify(authorization, client_host)
        if rps is not None and (wait := self.local.take(digest, rps)) is not None:
            raise RateLimited(wait)
        return tenant

    async def admit(self, authorization: str | None, client_host: str | None = None) -> Tenant:
        """As :meth:`authenticate`, the request counted in the configured limiter (shared by
        every gateway replica when LORAFLEET_RATE_LIMIT_STORAGE is set); never blocks the loop."""
        tenant, digest, rps = self._identify(authorization, client_host)
        if rps is not None and (wait := await self.limiter.hit(digest, rps)) is not None:
            raise RateLimited(wait)
        return tenant

    async def aclose(self) -> None:
        """Close the shared limiter's connections."""
        await self.limiter.aclose()
