"""Exact and near-duplicate detection on short texts (Jaccard over character 3-grams)."""

from __future__ import annotations

import re

__all__ = ["normalize_text", "shingles", "jaccard", "NearDuplicateIndex", "DEFAULT_NEAR_JACCARD"]

DEFAULT_NEAR_JACCARD = 0.85
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the key of an exact duplicate."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def shingles(text: str, n: int = 3) -> frozenset[str]:
    t = f" {text} "
    return frozenset(t[i:i + n] for i in range(max(1, len(t) - n + 1)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDuplicateIndex:
    """Texts seen so far; finds the first one that is an exact or near duplicate of a new text."""

    def __init__(self, threshold: float = DEFAULT_NEAR_JACCARD) -> None:
        self.threshold = threshold
        self._exact: dict[str, int] = {}
        self._items: list[tuple[int, frozenset[str], int]] = []

    def add(self, text: str, key: int) -> None:
        self._exact.setdefault(text, key)
        self._items.append((key, shingles(text), len(text)))

    def match(self, text: str) -> tuple[int, str] | None:
        """``(key, "exact"|"near")`` of a stored duplicate of ``text``, or None."""
        if text in self._exact:
            return self._exact[text], "exact"
        sh, n = shingles(text), len(text)
        for key, other, m in self._items:
            if min(n, m) / max(n, m, 1) < self.threshold:  # Jaccard cannot reach it
                continue
            if jaccard(sh, other) >= self.threshold:
                return key, "near"
        return None

    def add_if_new(self, text: str) -> bool:
        if self.match(text) is not None:
            return False
        self.add(text, len(self._items))
        return True
