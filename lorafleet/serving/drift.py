"""Drift of live traffic against an adapter version's training data.

For each (route, version) the gateway keeps a sliding window of prompt and completion
token lengths; the population stability index (PSI) of that window against the
histograms in the version's training fingerprint is exported as a gauge. Rule of thumb:
PSI < 0.1 no shift, 0.1-0.25 moderate, > 0.25 large.
"""

from __future__ import annotations

from collections import deque

from lorafleet.registry.fingerprint import histogram, psi

__all__ = ["DriftMonitor", "histogram", "psi", "reference_histograms", "reference_centroid", "FEATURES"]

FEATURES = ("prompt_tokens", "completion_tokens")


def reference_histograms(fingerprint) -> dict[str, tuple[list[float], list[float]]] | None:
    """{feature: (edges, counts)} from a version's training fingerprint (model or mapping)."""
    if fingerprint is None:
        return None
    data = fingerprint.model_dump() if hasattr(fingerprint, "model_dump") else dict(fingerprint)
    features = data.get("features") or data
    out = {}
    for name in FEATURES:
        h = features.get(name)
        if isinstance(h, dict) and h.get("edges") and h.get("counts"):
            out[name] = (list(h["edges"]), list(h["counts"]))
    return out or None


def reference_centroid(fingerprint) -> list[float] | None:
    """The training prompts' embedding centroid of a fingerprint (model or mapping), or None
    when it has none or it was made with another embedding model than the gateway's."""
    from lorafleet.embedding.minilm import EMBEDDING_DIM, EMBEDDING_MODEL

    if fingerprint is None:
        return None
    data = fingerprint.model_dump() if hasattr(fingerprint, "model_dump") else dict(fingerprint)
    vec = data.get("embedding_centroid")
    if not vec or len(vec) != EMBEDDING_DIM or data.get("embedding_model", EMBEDDING_MODEL) != EMBEDDING_MODEL:
        return None
    return [float(x) for x in vec]


class DriftMonitor:
    """Sliding windows of live token lengths per (route, version), compared on demand.

    ``reference(version)`` returns {feature: (edges, counts)} from the version's training
    fingerprint, or None when the version has none.
    """

    def __init__(self, psi, window: int = 500, min_samples: int = 30) -> None:
        self.psi = psi
        self.window = window
        self.min_samples = min_samples
        self._live: dict[tuple[str, str], dict[str, deque]] = {}

    def observe(self, route: str, version: str, prompt_tokens: int, completion_tokens: int) -> None:
        w = self._live.get((route, version))
        if w is None:
            w = self._live[(route, version)] = {f: deque(maxlen=self.window) for f in FEATURES}
        w["prompt_tokens"].append(prompt_tokens)
        w["completion_tokens"].append(completion_tokens)

    def versions(self) -> set[str]:
        """The versions with live traffic observed (whose references ``scores`` will need)."""
        return {version for (_route, version) in self._live}

    def retain(self, keep: set[tuple[str, str]]) -> None:
        """Forget the windows of (route, version) pairs not in ``keep`` (no longer routed), so
        the monitor holds at most one window per pair the routes name."""
        for pair in [p for p in self._live if p not in keep]:
            del self._live[pair]

    def scores(self, reference) -> dict[tuple[str, str, str], float]:
        """{(route, version, feature): PSI} for every window with enough samples and a reference."""
        out = {}
        for (route, version), windows in list(self._live.items()):
            ref = reference(version)
            if ref is None:
                continue
            for feature, values in windows.items():
                if len(values) < self.min_samples or feature not in ref:
                    continue
                edges, expected = ref[feature]
                out[(route, version, feature)] = self.psi(expected, histogram(values, edges))
        return out
