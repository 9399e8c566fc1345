"""Per-key rate limits, counted in this process or in a store every gateway replica shares.

A key's limit is ``rate_limit_rps`` from the keys file. Where it is counted is
``LORAFLEET_RATE_LIMIT_STORAGE`` (``GatewayConfig.rate_limit_storage``):

* unset: :class:`LocalRateLimiter`, a token bucket in this process (rate ``rps``, burst
  ``2 x rps``). With N gateway replicas a tenant gets N times its limit.
* ``redis://host:port/db`` or ``rediss://...`` (TLS): :class:`SharedRateLimiter`, counted
  in Redis through the `limits` library's asyncio storage (redis-py's asyncio client), so
  the limit holds across every replica. ``memory://`` runs the same code on an in-process
  store (one process only; for tests and comparisons).

Strategy: `limits`' **moving window**, at most ``amount`` requests in any ``window_s``
seconds, with ``amount / window_s`` within 5% of ``rps`` and a window of at least 2 s
(:func:`window_for`), so a key may burst to about 2 x rps as with the per-process bucket.
Chosen over the sliding-window counter because it is exact (the counter guesses from
the previous window as if its hits were spread evenly, so it can let a burst through or
refuse early) and a quota people pay for should hold exactly; its cost is one atomic Lua
script per request and a Redis list of at most ``amount`` timestamps per key. Timestamps
come from each gateway's clock, so replicas need synchronised clocks (NTP); a skew of
10 ms against a 2 s window moves the limit by 0.5%. The Redis key is the key's sha256
hash from the keys file (never the key itself) under the prefix ``lorafleet``.

Storage failures fail open, but not unlimited: when Redis does not answer (refused,
timed out after ``STORAGE_TIMEOUT_S``, any Redis error) the request is counted in this
process's own token bucket instead (today's per-process limit, so at worst N x the limit
across N replicas), ``on_error`` is called (the gateway counts
``lorafleet_rate_limit_storage_errors_total``), a warning is logged at most once every
``WARN_EVERY_S``, and Redis is not asked again for ``RETRY_S`` (every request in that time
takes the same fallback and is counted the same way). Redis is never retried inside a
request: a dead store costs a request at most one timeout. A bad URL is refused when the
limiter is made (at gateway start) with an error naming ``LORAFLEET_RATE_LIMIT_STORAGE``.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from lorafleet.core.errors import InputError

__all__ = ["RateLimiter", "LocalRateLimiter", "SharedRateLimiter", "open_rate_limiter", "storage_uri",
           "window_for", "redact", "STORAGE_ENV", "STORAGE_SCHEMES", "STORAGE_TIMEOUT_S", "RETRY_S", "WARN_EVERY_S"]

STORAGE_ENV = "LORAFLEET_RATE_LIMIT_STORAGE"
STORAGE_SCHEMES = ("redis", "rediss", "memory")
STORAGE_TIMEOUT_S = 0.5  # connect and per-command timeout against Redis; a request waits at most this
RETRY_S = 1.0  # after a storage failure, count in this process this long before asking Redis again
WARN_EVERY_S = 60.0  # at most one storage warning per this many seconds
KEY_PREFIX = "lorafleet"
NAMESPACE = "ratelimit"
MAX_WINDOW_S = 60  # window_for searches windows up to this; slower limits get one request per 1/rps seconds

log = logging.getLogger(__name__)


class RateLimiter(ABC):
    """Counts one request against a key's limit of ``rps`` requests per second."""

    @abstractmethod
    async def hit(self, key: str, rps: float) -> float | None:
        """Count one request for ``key``: None when it is within the limit (and counted),
        else the seconds until a request would be (this one is not counted)."""

    async def aclose(self) -> None:
        """Release connections (none here)."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


class LocalRateLimiter(RateLimiter):
    """A token bucket per key in this process: rate ``rps``, burst ``max(1, 2 x rps)``."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rps: float) -> float | None:
        """The synchronous :meth:`hit` (nothing here waits)."""
        burst = max(1.0, 2 * rps)
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, _Bucket(tokens=burst, stamp=now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rps)
        bucket.stamp = now
        if bucket.tokens < 1:
            return (1 - bucket.tokens) / rps
        bucket.tokens -= 1
        return None

    async def hit(self, key: str, rps: float) -> float | None:
        return self.take(key, rps)


@lru_cache(maxsize=1024)
def window_for(rps: float) -> tuple[int, int]:
    """``(amount, window_s)`` for a moving window that averages ``rps``: the shortest window
    of at least 2 s whose whole-number ``amount`` is within 5% of ``rps x window_s`` (the
    closest one up to ``MAX_WINDOW_S`` otherwise); below one request per ``MAX_WINDOW_S / 2``
    seconds, one request per ``round(1 / rps)`` seconds."""
    if not (isinstance(rps, int | float) and math.isfinite(rps) and rps > 0):
        raise ValueError(f"rate_limit_rps must be a positive number, got {rps!r}")
    if rps * MAX_WINDOW_S < 2:
        return 1, max(2, round(1 / rps))
    best: tuple[float, int, int] | None = None
    for window in range(2, MAX_WINDOW_S + 1):
        amount = round(rps * window)
        if amount < 1:
            continue
        error = abs(amount / window - rps) / rps
        if error <= 0.05:
            return amount, window
        if best is None or error < best[0]:
            best = (error, amount, window)
    assert best is not None  # rps * MAX_WINDOW_S >= 2 gives amount >= 1 at the longest window
    return best[1], best[2]


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for errors and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def _refuse(url: str, problem: str) -> InputError:
    return InputError(STORAGE_ENV, redact(url),
                      f"{problem}; expected redis://host:port/db, rediss://host:port/db (TLS) or memory:// "
                      "(this process only), or leave it unset to count in each gateway process")


def storage_uri(url: str) -> str:
    """The `limits` storage URI for a ``LORAFLEET_RATE_LIMIT_STORAGE`` value; raises InputError
    naming the variable for anything but redis://, rediss:// or memory://."""
    if not isinstance(url, str) or url != url.strip() or not url:
        raise _refuse(str(url), "not a URL")
    if "://" not in url:
        raise _refuse(url, "no scheme (redis://, rediss:// or memory://)")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError as err:
        raise _refuse(url, f"not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in STORAGE_SCHEMES:
        raise _refuse(url, f"unsupported scheme {parts.scheme + '://' if parts.scheme else '(none)'}")
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise _refuse(url, "memory:// takes nothing after the scheme")
        return "async+memory://"
    if not parts.hostname:
        raise _refuse(url, "no host")
    if port == 0:
        raise _refuse(url, "port 0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise _refuse(url, f"the database must be a number (got /{db})")
    return f"async+{scheme}{url[len(parts.scheme):]}"


class SharedRateLimiter(RateLimiter):
    """A moving window per key in a `limits` asyncio storage (Redis, or memory:// for one
    process), falling back to this process's bucket while the storage fails (see the module)."""

    def __init__(self, url: str, on_error: Callable[[], None] | None = None,
                 fallback: LocalRateLimiter | None = None) -> None:
        uri = storage_uri(url)
        from limits.aio.storage import MemoryStorage, RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.url = redact(url)
        if uri.startswith("async+memory"):
            self.storage = MemoryStorage(wrap_exceptions=True)
        else:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self.storage = RedisStorage(  # redis-py's asyncio client; lazily connected, on the running loop
                uri, wrap_exceptions=True, implementation="redispy", key_prefix=KEY_PREFIX,
                socket_connect_timeout=STORAGE_TIMEOUT_S, socket_timeout=STORAGE_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),  # never retried inside a request (redis-py's default backs off for s)
            )
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.fallback = fallback or LocalRateLimiter()
        self.on_error = on_error
        self.errors = 0  # requests counted by the fallback because the storage failed
        self._down_until = 0.0  # monotonic time before which the storage is not asked
        self._warned_at: float | None = None
        self._announced = False  # a failure warning went out and its recovery has not been logged yet

    @staticmethod
    def _item(rps: float):
        from limits import RateLimitItemPerSecond

        amount, window_s = window_for(rps)
        return RateLimitItemPerSecond(amount, window_s, namespace=NAMESPACE)

    async def hit(self, key: str, rps: float) -> float | None:
        from limits.errors import StorageError

        if time.monotonic() < self._down_until:
            return self._fall_back(key, rps, None)
        item = self._item(rps)
        try:
            if await self.strategy.hit(item, key):
                self._recovered()
                return None
            reset_at, _ = await self.strategy.get_window_stats(item, key)
        except (StorageError, OSError, TimeoutError) as err:
            return self._fall_back(key, rps, err)
        self._recovered()
        return max(0.0, reset_at - time.time())

    def _fall_back(self, key: str, rps: float, err: BaseException | None) -> float | None:
        now = time.monotonic()
        if err is not None:
            self._down_until = now + RETRY_S
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
                self._warned_at, self._announced = now, True
                cause = getattr(err, "storage_error", None) or err
                log.warning("rate limit storage %s failed (%s: %s): counting per-key limits in this process "
                            "(fail open to the per-process limit); retrying every %.0f s, this warning at most "
                            "every %.0f s", self.url, type(cause).__name__, cause, RETRY_S, WARN_EVERY_S)
        self.errors += 1
        if self.on_error is not None:
            self.on_error()
        return self.fallback.take(key, rps)

    def _recovered(self) -> None:
        if self._announced:  # logged once per warning, so a flapping store logs no more than the warnings
            self._announced = False
            log.warning("rate limit storage %s answers again: per-key limits are shared again", self.url)

    async def aclose(self) -> None:
        bridge = getattr(self.storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()


def open_rate_limiter(url: str | None, on_error: Callable[[], None] | None = None) -> RateLimiter:
    """The limiter for a ``LORAFLEET_RATE_LIMIT_STORAGE`` value: None (or empty) counts in this
    process; a bad URL raises InputError naming the variable."""
    if url is None or url == "":
        return LocalRateLimiter()
    return SharedRateLimiter(url, on_error=on_error)
