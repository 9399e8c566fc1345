"""Choose the variant (stable or canary) of a route for one request.

Sticky: a request with a key (the OpenAI ``user`` field or an ``X-Session-Id`` header)
hashes into one of 10,000 buckets, so one user keeps one variant while the weights stay
the same, and raising the weight only moves users from stable to canary, never back.
Requests without a key are split at random.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from lorafleet.serving.routes import Route

__all__ = ["BUCKETS", "Choice", "bucket_of", "choose"]

BUCKETS = 10_000
Variant = Literal["stable", "canary"]


@dataclass(frozen=True, slots=True)
class Choice:
    route: str
    version: str  # name@N
    variant: Variant


def bucket_of(route: str, key: str) -> int:
    """Stable bucket in [0, BUCKETS) for (route, key): sha256, never Python's hash()."""
    digest = hashlib.sha256(f"{route}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose(route_name: str, route: Route, key: str | None, rng: random.Random | None = None) -> Choice:
    canary = route.canary
    if canary is None or canary.weight <= 0:
        return Choice(route_name, route.stable, "stable")
    if key:
        point = bucket_of(route_name, key)
    else:
        point = (rng or random).randrange(BUCKETS)
    if point < canary.weight * (BUCKETS / 100):
        return Choice(route_name, canary.version, "canary")
    return Choice(route_name, route.stable, "stable")
