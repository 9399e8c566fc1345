"""Read the gateway's /metrics into per-variant figures (the control plane's eyes).

Counters are cumulative, so a judgement over an interval subtracts two scrapes; p95
latency comes from the difference of the histogram buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx

from lorafleet.platform.errors import PlatformError

__all__ = ["CacheFigures", "Scrape", "VariantFigures", "cache_figures", "figures", "scrape"]

ERROR_STATUSES = ("422", "500", "502", "503", "504")


@dataclass
class Scrape:
    at_s: float
    samples: list[tuple[str, dict[str, str], float]]


def scrape(gateway_root_url: str, timeout_s: float = 5.0) -> Scrape:
    """One scrape of ``/metrics``; a gateway that does not answer is a PlatformError."""
    import time

    from prometheus_client.parser import text_string_to_metric_families

    try:
        resp = httpx.get(f"{gateway_root_url}/metrics", timeout=timeout_s)
        resp.raise_for_status()
    except httpx.HTTPError as err:
        raise PlatformError(f"cannot read the gateway's metrics at {gateway_root_url}/metrics: {err}") from None
    samples = [(s.name, dict(s.labels), float(s.value))
               for fam in text_string_to_metric_families(resp.text) for s in fam.samples]
    return Scrape(time.monotonic(), samples)


@dataclass
class VariantFigures:
    """What one variant of one route did between two scrapes (or since start)."""

    version: str = ""
    requests: float = 0.0
    errors: float = 0.0
    schema_checks: float = 0.0
    schema_failures: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    drift_psi: float | None = None
    fallbacks: float = 0.0  # canary requests served by stable: the version could not be loaded
    seconds: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def schema_failure_rate(self) -> float:
        return self.schema_failures / self.schema_checks if self.schema_checks else 0.0

    @property
    def request_rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def latency_quantile_s(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (like histogram_quantile's worst case)."""
        total = self.buckets.get(math.inf, 0.0)
        if total <= 0:
            return math.nan
        for le in sorted(self.buckets):
            if self.buckets[le] >= q * total:
                return le
        return math.inf


def _collect(s: Scrape, route: str, variant: str, version: str) -> VariantFigures:
    f = VariantFigures(version=version)
    for name, labels, value in s.samples:
        if labels.get("route") != route or labels.get("version") != version:
            continue
        if name == "lorafleet_canary_fallbacks_total":
            f.fallbacks += value if variant == "canary" else 0.0
            continue
        if name == "lorafleet_drift_psi_ratio":
            if labels.get("feature") == "prompt_tokens":
                f.drift_psi = value
            continue
        if labels.get("variant") != variant:
            continue
        if name == "lorafleet_requests_total":
            f.requests += value
            if labels["status"] in ERROR_STATUSES:
                f.errors += value
        elif name == "lorafleet_schema_checks_total":
            f.schema_checks += value
        elif name == "lorafleet_schema_failures_total":
            f.schema_failures += value
        elif name == "lorafleet_request_duration_seconds_bucket":
            le = float(labels["le"])
            f.buckets[le] = f.buckets.get(le, 0.0) + value
    return f


def figures(now: Scrape, before: Scrape | None, route: str, versions: dict[str, str]) -> dict[str, VariantFigures]:
    """{variant: figures} of ``route`` over (before, now], or since the gateway started.

    ``versions`` maps each variant to its version label (``name@N``, or ``base``), so a
    variant's figures never mix two versions.
    """
    result: dict[str, VariantFigures] = {}
    for variant, version in versions.items():
        c = _collect(now, route, variant, version)
        p = _collect(before, route, variant, version) if before is not None else VariantFigures()
        result[variant] = VariantFigures(
            version=version,
            requests=c.requests - p.requests,
            errors=c.errors - p.errors,
            schema_checks=c.schema_checks - p.schema_checks,
            schema_failures=c.schema_failures - p.schema_failures,
            buckets={le: n - p.buckets.get(le, 0.0) for le, n in c.buckets.items()},
            drift_psi=c.drift_psi,
            fallbacks=c.fallbacks - p.fallbacks,
            seconds=(now.at_s - before.at_s) if before is not None else 0.0,
        )
    return result


# -- the adapter cache, per engine --------------------------------------------------------
THRASH_MISS_RATE = 0.2  # over this share of misses, with evictions, the active set outgrows the slots


@dataclass
class CacheFigures:
    """One engine's adapter cache between two scrapes (or since start), from the gateway's view."""

    engine: str
    hits: float = 0.0
    misses: float = 0.0
    loads_failed: float = 0.0
    unloads: float = 0.0
    loaded: float = 0.0  # gauges: as of the later scrape
    slots: float = 0.0

    @property
    def requests(self) -> float:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.requests if self.requests else None

    def advice(self) -> str | None:
        """What to change when misses dominate because versions are evicted and loaded again."""
        if self.hit_rate is None or 1 - self.hit_rate <= THRASH_MISS_RATE or self.unloads <= 0:
            return None
        return (f"{self.engine}: {1 - self.hit_rate:.0%} of adapter requests missed and {self.unloads:g} idle "
                f"versions were unloaded to make room: the active adapters outgrow its {self.slots:g} slots. "
                "Raise LORAFLEET_ENGINE_MAX_CPU_LORAS (the gateway's max_loaded_adapters and vLLM's "
                "--max-cpu-loras; memory per slot is the adapter's size) or add an engine.")


def _cache(s: Scrape) -> dict[str, CacheFigures]:
    out: dict[str, CacheFigures] = {}
    for name, labels, value in s.samples:
        engine = labels.get("engine")
        if engine is None:
            continue
        f = out.setdefault(engine, CacheFigures(engine))
        if name == "lorafleet_adapter_cache_total":
            if labels.get("result") == "hit":
                f.hits += value
            else:
                f.misses += value
        elif name == "lorafleet_adapter_loads_total" and labels.get("result") == "failed":
            f.loads_failed += value
        elif name == "lorafleet_adapter_unloads_total":
            f.unloads += value
        elif name == "lorafleet_adapters_loaded":
            f.loaded = value
        elif name == "lorafleet_adapter_slots":
            f.slots = value
    return out


def cache_figures(now: Scrape, before: Scrape | None = None) -> list[CacheFigures]:
    """Per engine: adapter-cache hits, misses, failed loads and unloads over (before, now]."""
    c, p = _cache(now), _cache(before) if before is not None else {}
    rows = []
    for engine, f in sorted(c.items()):
        b = p.get(engine, CacheFigures(engine))
        rows.append(CacheFigures(engine, f.hits - b.hits, f.misses - b.misses, f.loads_failed - b.loads_failed,
                                 f.unloads - b.unloads, f.loaded, f.slots))
    return rows
