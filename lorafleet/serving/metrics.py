"""Every Prometheus metric lorafleet exports, declared here and nowhere else.

Prefix ``lorafleet_``, base units, explicit buckets; labels only from small fixed sets
whose values come from config (route, version, variant, status), never request ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "LATENCY_BUCKETS_S"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """The gateway's metrics in their own registry (one per gateway app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lorafleet_requests", "Requests by route, version, variant and HTTP status.",
            ["route", "version", "variant", "status"], registry=r,
        )
        self.request_duration = Histogram(
            "lorafleet_request_duration_seconds", "End-to-end request latency at the gateway.",
            ["route", "variant"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.adapter_loads = Counter(
            "lorafleet_adapter_loads", "Adapter loads on engines by result.", ["result"], registry=r,
        )
        self.adapters_loaded = Gauge(
            "lorafleet_adapters_loaded", "Adapter versions loaded, per engine.", ["engine"], registry=r,
        )
        self.routes_reloads = Counter(
            "lorafleet_routes_reloads", "Routes-file reloads by result.", ["result"], registry=r,
        )
