"""Per-key rate limits (serving/ratelimit.py) without a Redis: the per-process token bucket
(rate rps, burst 2x), the moving window the shared limiter keeps (on limits' in-process
memory:// store), the storage URL check naming LORAFLEET_RATE_LIMIT_STORAGE, and the
fail-open path against a real closed port: the request is served, counted in the process's
own bucket instead, reported once per interval, and Redis is not asked again at once."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from lorafleet.core.config import ConfigError
from lorafleet.core.errors import InputError
from lorafleet.engine.process import free_port
from lorafleet.serving.ratelimit import (
    RETRY_S,
    STORAGE_ENV,
    STORAGE_TIMEOUT_S,
    LocalRateLimiter,
    SharedRateLimiter,
    open_rate_limiter,
    redact,
    storage_uri,
    window_for,
)
from lorafleet.serving.tenants import Authenticator, KeysFile, RateLimited

pytestmark = pytest.mark.unit


def test_the_local_bucket_allows_a_burst_of_2x_then_the_rate() -> None:
    limiter = LocalRateLimiter()
    started = time.monotonic()
    assert all(limiter.take("k", 10) is None for _ in range(20))  # burst 2 x 10
    wait = limiter.take("k", 10)
    assert wait is not None and 0 < wait <= 0.1 + 1e-9
    assert limiter.take("other", 10) is None  # keys count apart
    time.sleep(0.3)  # 10 rps: three tokens back
    accepted = sum(limiter.take("k", 10) is None for _ in range(20))
    elapsed = time.monotonic() - started
    assert 3 <= accepted <= int(elapsed * 10) + 1, (accepted, elapsed)


def test_a_slow_limit_has_a_burst_of_one() -> None:
    limiter = LocalRateLimiter()
    assert limiter.take("k", 0.2) is None
    wait = limiter.take("k", 0.2)
    assert wait is not None and 4.9 < wait <= 5.0


@pytest.mark.parametrize("rps", [0.001, 0.03, 0.3, 0.5, 0.7, 1, 2.3, 5, 7.7, 20, 33.3, 1000.5])
def test_the_moving_window_averages_the_rate(rps: float) -> None:
    amount, window_s = window_for(rps)
    assert amount >= 1 and window_s >= 2
    assert abs(amount / window_s - rps) / rps <= 0.05 or rps < 1 / 30, (amount, window_s)
    if rps >= 1:
        assert window_s <= 3 and amount <= 3 * rps + 1  # a burst of about 2x, never much more


@pytest.mark.parametrize("rps", [0, -1, float("inf"), float("nan")])
def test_a_bad_rate_is_refused(rps: float) -> None:
    with pytest.raises(ValueError, match="rate_limit_rps"):
        window_for(rps)
    with pytest.raises(ConfigError, match="rate_limit_rps"):
        KeysFile.from_mapping({"tenants": {"acme": {"rate_limit_rps": rps}}})


@pytest.mark.parametrize(("url", "uri"), [
    ("redis://127.0.0.1:6379/0", "async+redis://127.0.0.1:6379/0"),
    ("redis://redis.internal", "async+redis://redis.internal"),
    ("rediss://:pw@cache.example:6380/2", "async+rediss://:pw@cache.example:6380/2"),
    ("REDIS://h:1/3", "async+redis://h:1/3"),
    ("memory://", "async+memory://"),
])
def test_storage_urls_that_are_accepted(url: str, uri: str) -> None:
    assert storage_uri(url) == uri


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:6379", "unsupported scheme http://"),
    ("memcached://127.0.0.1:11211", "unsupported scheme memcached://"),
    ("redis+unix:///tmp/redis.sock", "unsupported scheme redis+unix://"),
    ("localhost:6379", "no scheme"),
    ("redis://h:99999/0", "not a valid URL"),
    ("redis://h:0/0", "port 0"),
    ("redis:///0", "no host"),
    ("redis://h:6379/zero", "the database must be a number"),
    ("memory://somewhere", "memory:// takes nothing"),
    (" redis://h:6379", "not a URL"),
    ("", "not a URL"),
])
def test_a_bad_storage_url_is_refused_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(InputError) as info:
        storage_uri(url)
    assert info.value.field == STORAGE_ENV and problem in str(info.value)
    assert str(info.value).startswith("LORAFLEET_RATE_LIMIT_STORAGE=")


def test_a_password_never_shows_in_the_error() -> None:
    assert redact("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("rediss://:s3cret@h:1") == "rediss://:***@h:1"
    with pytest.raises(InputError) as info:
        storage_uri("https://user:s3cret@h:1/0")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_the_limiter_follows_the_setting(tmp_path: Path) -> None:
    assert isinstance(open_rate_limiter(None), LocalRateLimiter)
    assert isinstance(open_rate_limiter(""), LocalRateLimiter)  # an empty variable is unset
    assert isinstance(open_rate_limiter("memory://"), SharedRateLimiter)
    assert isinstance(open_rate_limiter("redis://127.0.0.1:6379/0"), SharedRateLimiter)  # connects lazily
    keys = tmp_path / "keys.yaml"
    keys.write_text(KeysFile().to_yaml())
    with pytest.raises(InputError, match=STORAGE_ENV):  # what the gateway gets at start
        Authenticator.from_file(keys, rate_limit_storage="http://127.0.0.1:6379")


def test_the_moving_window_counts_and_says_when_to_retry() -> None:
    async def run() -> tuple[list[float | None], list[float | None]]:
        limiter = SharedRateLimiter("memory://")
        first = [await limiter.hit("k", 5) for _ in range(12)]  # 5 rps: 10 in any 2 s
        other = [await limiter.hit("other", 5) for _ in range(3)]
        return first, other

    first, other = asyncio.run(run())
    assert first[:10] == [None] * 10
    assert all(wait is not None and 0 < wait <= 2.0 for wait in first[10:]), first
    assert other == [None] * 3


def test_admit_counts_in_the_configured_limiter_and_raises_openais_429() -> None:
    keys = KeysFile()
    key = keys.add_key("acme")
    keys.tenants["acme"].rate_limit_rps = 1
    auth = Authenticator(keys, SharedRateLimiter("memory://"))

    async def run() -> RateLimited:
        for _ in range(2):  # 1 rps: 2 in any 2 s
            assert (await auth.admit(f"Bearer {key}")).name == "acme"
        with pytest.raises(RateLimited) as info:
            await auth.admit(f"Bearer {key}")
        return info.value

    err = asyncio.run(run())
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and 1 <= int(err.headers["Retry-After"]) <= 3
    assert auth.authenticate(f"Bearer {key}").name == "acme"  # /v1/models, /admin: this process's own bucket


def test_with_the_storage_unreachable_requests_fail_open_to_the_process_limit(caplog) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # a real port nobody listens on: connection refused
    errors: list[int] = []
    limiter = SharedRateLimiter(url, on_error=lambda: errors.append(1))

    async def run() -> tuple[list[float | None], float]:
        started = time.monotonic()
        waits = [await limiter.hit("k", 2) for _ in range(6)]  # fallback bucket: burst 4
        return waits, time.monotonic() - started

    with caplog.at_level(logging.WARNING, logger="lorafleet.serving.ratelimit"):
        waits, elapsed = asyncio.run(run())
        asyncio.run(limiter.aclose())
    assert waits[:4] == [None] * 4 and all(w is not None for w in waits[4:]), waits  # served, still bounded
    assert len(errors) == limiter.errors == 6
    assert elapsed < STORAGE_TIMEOUT_S + 0.5 and elapsed < RETRY_S  # asked once, then not again for RETRY_S
    warnings = [r for r in caplog.records if "fail open" in r.getMessage()]
    assert len(warnings) == 1 and url in warnings[0].getMessage()
