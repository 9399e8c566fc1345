"""The training-distribution fingerprint stored in each adapter manifest, and the PSI that
serving computes against it to watch for drift.

Histograms use fixed bucket edges (:data:`TOKEN_LENGTH_EDGES` for token lengths,
:data:`TURN_EDGES` for messages per example) so live traffic can be bucketed the same way.
Pure Python: no numpy, no torch.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TOKEN_LENGTH_EDGES", "TURN_EDGES", "Histogram", "Fingerprint", "histogram", "psi"]

# Upper bucket edges; a histogram has len(edges) + 1 buckets, the last one is "> edges[-1]".
TOKEN_LENGTH_EDGES: list[float] = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048]
TURN_EDGES: list[float] = [1, 2, 3, 4, 6, 8, 12, 16]


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts of ``values`` in the buckets ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect.bisect_left(edges, v)] += 1
    return counts


def psi(expected_hist: Sequence[float], actual_hist: Sequence[float], floor: float = 1e-4) -> float:
    """Population stability index of two histograms over the same buckets.

    Each histogram is normalised to shares; empty buckets count as ``floor`` so the log is
    defined. 0 means identical; rule of thumb: < 0.1 no shift, 0.1-0.25 moderate, > 0.25 large.
    An empty histogram on either side gives 0.0 (nothing to compare).
    """
    if len(expected_hist) != len(actual_hist):
        raise ValueError(f"psi: histograms have {len(expected_hist)} and {len(actual_hist)} buckets")
    te, ta = float(sum(expected_hist)), float(sum(actual_hist))
    if te <= 0 or ta <= 0:
        return 0.0
    total = 0.0
    for e, a in zip(expected_hist, actual_hist, strict=True):
        pe, pa = max(e / te, floor), max(a / ta, floor)
        total += (pa - pe) * math.log(pa / pe)
    return total


class Histogram(BaseModel):
    """Counts over fixed buckets: ``counts[i]`` holds values in ``(edges[i-1], edges[i]]``."""

    edges: list[float] = Field(description="Bucket upper edges, ascending; counts has one more bucket (> last edge).")
    counts: list[float] = Field(description="Rows per bucket (len(edges) + 1 of them).")
    mean: float | None = Field(default=None, description="Mean of the raw values.")

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges must be strictly ascending, got {self.edges}")
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"counts needs len(edges) + 1 = {len(self.edges) + 1} buckets, got {len(self.counts)}")
        if any(c < 0 for c in self.counts):
            raise ValueError(f"counts must not be negative, got {self.counts}")
        return self

    @classmethod
    def of(cls, values: Sequence[float], edges: Sequence[float] = TOKEN_LENGTH_EDGES) -> Histogram:
        """The histogram of raw values over ``edges``."""
        mean = sum(values) / len(values) if values else None
        return cls(edges=list(edges), counts=histogram(values, edges), mean=mean)


class Fingerprint(BaseModel):
    """The training distribution, compared with live traffic for drift."""

    model_config = ConfigDict(extra="allow")

    rows: int = Field(description="Training rows.")
    features: dict[str, Histogram] = Field(
        description="prompt_tokens, completion_tokens (and more) token-length histograms."
    )
    labels: dict[str, float] = Field(default_factory=dict, description="Share of each target label.")
    turns_per_example: Histogram | None = Field(default=None, description="Messages per example (TURN_EDGES).")
    embedding_centroid: list[float] | None = Field(
        default=None, description="Mean embedding of a sample of the user prompts (L2-normalised each), if computed."
    )
    embedding_model: str | None = Field(default=None, description="The model the centroid was embedded with.")
    embedding_rows: int | None = Field(default=None, description="Prompts the centroid averages (a seeded sample).")

    def psi(self, feature: str, live_values: Sequence[float]) -> float | None:
        """PSI of raw live values against this fingerprint's ``feature`` histogram (None if absent)."""
        ref = self.features.get(feature)
        if ref is None:
            return None
        return psi(ref.counts, histogram(live_values, ref.edges))
