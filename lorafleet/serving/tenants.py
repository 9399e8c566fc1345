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
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from lorafleet.core.config import ConfigModel
from lorafleet.core.names import check_name
from lorafleet.serving.errors import ServingError

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
    rate_limit_rps: float | None = Field(default=None, gt=0, description="Requests per second per key.")


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


@dataclass
class _Bucket:
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


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
    """Looks a bearer key up by its hash; None keys file means the gateway runs open."""

    def __init__(self, keys: KeysFile | None) -> None:
        self.open = keys is None
        self._by_hash: dict[str, tuple[Tenant, float | None]] = {}
        self._buckets: dict[str, _Bucket] = {}
        if keys is not None:
            for h in keys.admin_keys:
                self._by_hash[h] = (Tenant("admin", frozenset({"*"}), admin=True), None)
            for name, t in keys.tenants.items():
                for h in t.keys:
                    self._by_hash[h] = (Tenant(name, frozenset(t.routes)), t.rate_limit_rps)

    @classmethod
    def from_file(cls, path: Path | None) -> Authenticator:
        return cls(KeysFile.from_yaml(path) if path is not None else None)

    def authenticate(self, authorization: str | None, client_host: str | None = None) -> Tenant:
        """The caller's tenant. With no keys file every caller may call every route, but only
        a caller on loopback (``client_host`` 127.0.0.0/8 or ::1) is an admin."""
        if self.open:
            return OPEN if is_loopback(client_host) else OPEN_REMOTE
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = hash_key(authorization[7:].strip())
        found = self._by_hash.get(digest)  # keys are looked up by hash; the key itself is never stored
        if found is None:
            raise Unauthorized()
        tenant, rps = found
        if rps is not None:
            self._take(digest, rps)
        return tenant

    def _take(self, digest: str, rps: float) -> None:
        burst = max(1.0, 2 * rps)
        now = time.monotonic()
        bucket = self._buckets.setdefault(digest, _Bucket(tokens=burst, stamp=now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rps)
        bucket.stamp = now
        if bucket.tokens < 1:
            raise RateLimited((1 - bucket.tokens) / rps)
        bucket.tokens -= 1
