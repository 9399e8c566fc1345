"""Every Prometheus metric lorafleet exports, declared here and nowhere else.

Prefix ``lorafleet_``, base units, explicit buckets; labels only from small fixed sets
whose values come from config (route, version, variant, tenant, status, reason,
finish_reason), never request or user ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "LATENCY_BUCKETS_S", "TTFT_BUCKETS_S", "TOKEN_BUCKETS"]

# Dense from 1 to 20 s, where CPU serving's answers land (the quickstart's requests took 2.5-5 s each at
# 8 streams on the Intel machine; at 16 streams in fp32 on the AVX2 one its p95 was between 10 and 15 s):
# `platform status` shows a p95 as its bucket's bound, so the bounds are its resolution.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 12.5, 15, 20, 30, 60,
                     120)
TTFT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 30)
TOKEN_BUCKETS = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

_VARIANT = ["route", "version", "variant"]


class GatewayMetrics:
    """The gateway's metrics in their own registry (one per gateway app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lorafleet_requests", "Requests by route, version, variant, tenant and HTTP status.",
            [*_VARIANT, "tenant", "status"], registry=r,
        )
        self.request_duration = Histogram(
            "lorafleet_request_duration_seconds", "End-to-end request latency at the gateway.",
            _VARIANT, buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.time_to_first_token = Histogram(
            "lorafleet_time_to_first_token_seconds", "Time from request to the first streamed token.",
            _VARIANT, buckets=TTFT_BUCKETS_S, registry=r,
        )
        self.prompt_tokens = Counter(
            "lorafleet_prompt_tokens", "Prompt tokens processed.", [*_VARIANT, "tenant"], registry=r,
        )
        self.completion_tokens = Counter(
            "lorafleet_completion_tokens", "Completion tokens generated.", [*_VARIANT, "tenant"], registry=r,
        )
        self.completions = Counter(
            "lorafleet_completions", "Completed choices by finish reason.", [*_VARIANT, "finish_reason"], registry=r,
        )
        self.schema_checks = Counter(
            "lorafleet_schema_checks", "Responses checked against their route's schema.", _VARIANT, registry=r,
        )
        self.schema_failures = Counter(
            "lorafleet_schema_failures", "Responses that failed their route's schema, by reason.",
            [*_VARIANT, "reason"], registry=r,
        )
        self.input_rejections = Counter(
            "lorafleet_input_rejections", "Requests refused by a route's input checks, by reason.",
            ["route", "reason"], registry=r,
        )
        self.cost = Counter(
            "lorafleet_cost_usd", "Cost of the tokens served, in US dollars, from the route's price.",
            [*_VARIANT, "tenant"], registry=r,
        )
        self.drift_psi = Gauge(
            "lorafleet_drift_psi_ratio",
            "Population stability index of live traffic vs the version's training data, by feature.",
            ["route", "version", "feature"], registry=r,
        )
        self.drift_embedding_distance = Gauge(
            "lorafleet_drift_embedding_distance",
            "Cosine distance of the live prompt-embedding centroid (a sample, all-MiniLM-L6-v2) from the "
            "version's training centroid: 0 same direction, 1 orthogonal.",
            _VARIANT, registry=r,
        )
        self.drift_embedding_samples = Counter(
            "lorafleet_drift_embedding_samples",
            "Sampled prompts for embedding drift by result (embedded, dropped: queue full, failed).",
            ["result"], registry=r,
        )
        self.adapter_loads = Counter(
            "lorafleet_adapter_loads", "Adapter loads on engines by engine and result (ok, failed).",
            ["engine", "result"], registry=r,
        )
        self.adapter_cache = Counter(
            "lorafleet_adapter_cache",
            "Requests for an adapter version by engine and whether that engine had it loaded (hit) or "
            "had to load it first (miss).", ["engine", "result"], registry=r,
        )
        self.adapter_unloads = Counter(
            "lorafleet_adapter_unloads",
            "Idle adapter versions unloaded from an engine to make room for another (evictions).",
            ["engine"], registry=r,
        )
        self.canary_fallbacks = Counter(
            "lorafleet_canary_fallbacks",
            "Requests routed to a canary version that could not be loaded, served by stable instead.",
            ["route", "version"], registry=r,
        )
        self.adapter_load_duration = Histogram(
            "lorafleet_adapter_load_duration_seconds", "Time to make an adapter version ready on an engine.",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.adapters_loaded = Gauge(
            "lorafleet_adapters_loaded", "Adapter versions loaded, per engine.", ["engine"], registry=r,
        )
        self.adapter_slots = Gauge(
            "lorafleet_adapter_slots",
            "Adapter versions the gateway keeps loaded per engine before it unloads idle ones "
            "(max_loaded_adapters).", ["engine"], registry=r,
        )
        self.engine_up = Gauge(
            "lorafleet_engine_up", "1 if the engine answers its health check.", ["engine"], registry=r,
        )
        self.engine_requests = Counter(
            "lorafleet_engine_requests",
            'Requests forwarded to each engine, by adapter version ("base" for the base model).',
            ["engine", "version"], registry=r,
        )
        self.routes_reloads = Counter(
            "lorafleet_routes_reloads", "Routes-file reloads by result.", ["result"], registry=r,
        )
        self.request_log_dropped = Counter(
            "lorafleet_request_log_dropped",
            "Request-log lines dropped because the background writer's queue was full.", registry=r,
        )
        self.reference_lookups = Counter(
            "lorafleet_reference_lookups",
            "Lookups of a version's training reference (drift) by result (ok, missing, failed).",
            ["result"], registry=r,
        )
        self.rate_limit_storage_errors = Counter(
            "lorafleet_rate_limit_storage_errors",
            "Requests the shared rate-limit storage (Redis) could not count; counted in this process "
            "instead (fail open to the per-process limit).", registry=r,
        )
        self.route_info = Gauge(
            "lorafleet_route_info", "Which version serves which variant of a route, valued at its weight (percent).",
            _VARIANT, registry=r,
        )
