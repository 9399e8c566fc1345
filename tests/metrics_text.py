"""Reading Prometheus text exposition in tests with prometheus_client's parser (never by substring)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["samples", "total", "scrape"]


def scrape(root_url: str, timeout_s: float = 10.0) -> str:
    """The text of ``root_url``/metrics."""
    return httpx.get(f"{root_url}/metrics", timeout=timeout_s).text


def samples(text: str, name: str, **labels: str) -> list:
    """Every sample called ``name`` (the full sample name, e.g. ``x_total``) whose labels include ``labels``."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def total(text: str, name: str, **labels: str) -> float:
    """The sum of those samples' values (0 when there are none)."""
    return sum(s.value for s in samples(text, name, **labels))
