"""Diversity of the training rows: does each label have many genuinely different phrasings, or
were the rows made from a few templates?

Per label (the answer's ``checks.label_field``, or ``error:<value>`` of ``checks.error_field``
for error objects) it counts rows, distinct phrasings (masked "skeletons": the words with
ids/numbers and slot fillers masked), the share of template-made rows (rows most of whose word
n-grams recur in many other rows of the label), the distinct word n-gram ratio and the
vocabulary. A label x error-object coverage table says which error objects (hard negatives)
exist near which intent: each error row is assigned to the intent whose words it shares most.
Warnings (thresholds in :class:`~lorafleet.training.config.DataCheckSettings`) say when the data
looks template-made.

Slot fillers are found from the data itself: a word position whose neighbours (previous and
next word) occur with many different words in between (``the {item} from``) is a slot, and its
words are masked, so ``the lamp from`` and ``the kettle from`` share a skeleton.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

__all__ = ["LabelDiversity", "DiversityReport", "skeleton", "mask_slots", "word_ngrams", "diversity_report",
           "NO_INTENT", "SLOT", "ID"]

ID = "<id>"
SLOT = "<slot>"
NO_INTENT = "(no intent)"
_TOKEN = re.compile(r"[#\w']+", re.UNICODE)
_HAS_DIGIT = re.compile(r"\d")
SLOT_MIN_FILLERS = 4  # distinct words seen between the same two neighbours that make the position a slot
COVERAGE_MIN_SCORE = 0.05  # an error row sharing less than this (tf-idf) with every intent is "(no intent)"


def skeleton(text: str) -> list[str]:
    """Lower-case word tokens; every token with a digit (ids, numbers, "#K48213") becomes ``<id>``."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        tok = tok.strip("#'_")
        if not tok:
            continue
        out.append(ID if _HAS_DIGIT.search(tok) else tok)
    return out


def mask_slots(skeletons: list[list[str]], min_fillers: int = SLOT_MIN_FILLERS) -> list[list[str]]:
    """Mask the words at slot positions: (previous, next) word pairs seen with >= ``min_fillers`` fillers."""
    fillers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for sk in skeletons:
        padded = ["^", *sk, "$"]
        for i in range(1, len(padded) - 1):
            fillers[(padded[i - 1], padded[i + 1])].add(padded[i])
    slots = {ctx for ctx, words in fillers.items() if len(words) >= min_fillers}
    out = []
    for sk in skeletons:
        padded = ["^", *sk, "$"]
        out.append([SLOT if (padded[i - 1], padded[i + 1]) in slots and padded[i] != ID else padded[i]
                    for i in range(1, len(padded) - 1)])
    return out


def word_ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


@dataclass
class LabelDiversity:
    """Diversity figures of one label's train rows."""

    label: str
    rows: int
    distinct_skeletons: int
    template_rows: int
    template_share: float
    distinct_ngram_ratio: float
    vocabulary: int
    judged: bool  # enough rows to judge (checks.diversity_min_label_rows)


@dataclass
class DiversityReport:
    labels: list[LabelDiversity] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)  # intent -> error value -> rows
    error_values: list[str] = field(default_factory=list)
    template_share: float = 0.0  # over all judged rows
    warnings: list[str] = field(default_factory=list)


def _label_diversity(label: str, texts: list[str], n: int, min_rows: int, judged: bool) -> LabelDiversity:
    raw = [skeleton(t) for t in texts]
    masked = mask_slots(raw)
    grams = [word_ngrams(sk, n) for sk in masked]
    df: Counter = Counter()
    for g in grams:
        df.update(set(g))
    total = sum(len(g) for g in grams)
    distinct = len({x for g in grams for x in g})
    template_rows = 0
    for g in grams:
        if g and sum(1 for x in set(g) if df[x] >= min_rows) * 2 >= len(set(g)):
            template_rows += 1
    return LabelDiversity(
        label=label, rows=len(texts), distinct_skeletons=len({" ".join(sk) for sk in masked}),
        template_rows=template_rows, template_share=template_rows / len(texts) if texts else 0.0,
        distinct_ngram_ratio=distinct / total if total else 1.0,
        vocabulary=len({w for sk in raw for w in sk if w != ID}), judged=judged,
    )


def _coverage(intent_texts: dict[str, list[str]], error_texts: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """For each error row, the intent whose (tf-idf weighted) words it shares most, or NO_INTENT."""
    profiles = {k: Counter(w for t in v for w in set(skeleton(t)) if w != ID) for k, v in intent_texts.items()}
    n_int = len(profiles)
    present = Counter(w for p in profiles.values() for w in p)
    weights = {k: {w: (c / len(intent_texts[k])) * math.log((1 + n_int) / (1 + present[w])) for w, c in p.items()}
               for k, p in profiles.items()}
    table: dict[str, dict[str, int]] = {k: Counter() for k in [*sorted(profiles), NO_INTENT]}
    for err, texts in error_texts.items():
        for t in texts:
            words = set(skeleton(t)) - {ID}
            best, score = NO_INTENT, COVERAGE_MIN_SCORE
            for k, w in weights.items():
                s = sum(w.get(x, 0.0) for x in words)
                if s > score:
                    best, score = k, s
            table[best][err] += 1
    return {k: dict(v) for k, v in table.items()}


def diversity_report(rows: list[tuple[str, dict | None]], label_field: str, error_field: str | None, *,
                     ngram: int, template_ngram_min_rows: int, template_ngram_min_share: float, max_template_share: float,
                     min_distinct_ngram_ratio: float, min_label_rows: int) -> DiversityReport:
    """``rows``: (user text, parsed answer object or None) of the train split. Thresholds as in
    :class:`~lorafleet.training.config.DataCheckSettings` (the fields of the same names)."""
    by_label: dict[str, list[str]] = defaultdict(list)
    intent_texts: dict[str, list[str]] = defaultdict(list)
    error_texts: dict[str, list[str]] = defaultdict(list)
    for text, obj in rows:
        obj = obj if isinstance(obj, dict) else {}
        if label_field in obj:
            label = str(obj[label_field])
            intent_texts[label].append(text)
        elif error_field is not None and error_field in obj:
            label = f"{error_field}:{obj[error_field]}"
            error_texts[str(obj[error_field])].append(text)
        else:
            label = "(none)"
        by_label[label].append(text)

    report = DiversityReport(error_values=sorted(error_texts))
    for label, texts in sorted(by_label.items(), key=lambda kv: -len(kv[1])):
        min_rows = max(template_ngram_min_rows, math.ceil(template_ngram_min_share * len(texts)))
        report.labels.append(_label_diversity(label, texts, ngram, min_rows, judged=len(texts) >= min_label_rows))
    judged = [d for d in report.labels if d.judged]
    if judged:
        report.template_share = sum(d.template_rows for d in judged) / sum(d.rows for d in judged)
    if error_field is not None and error_texts:
        report.coverage = _coverage(intent_texts, error_texts)

    flagged = [d for d in judged if d.template_share > max_template_share
               or d.distinct_ngram_ratio < min_distinct_ngram_ratio]
    for d in flagged:
        report.warnings.append(
            f"data.train label {d.label!r} looks template-made: {d.template_share:.0%} of its {d.rows} rows repeat "
            f"common word {ngram}-grams (checks.max_template_share={max_template_share}), distinct {ngram}-gram "
            f"ratio {d.distinct_ngram_ratio:.2f} (checks.min_distinct_ngram_ratio={min_distinct_ngram_ratio}), "
            f"{d.distinct_skeletons} distinct phrasings")
    if report.template_share > max_template_share:
        report.warnings.insert(0, (
            f"WARNING data.train looks TEMPLATE-MADE: {report.template_share:.0%} of rows share most of their "
            f"word {ngram}-grams with many other rows of their label (limit "
            f"checks.max_template_share={max_template_share}); an adapter trained on it learns the templates, not "
            f"the task: write many genuinely different phrasings per label"))
    return report
