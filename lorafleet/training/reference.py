"""Reference scoring (the regression suite): an answer passes when it contains every keyword its
row requires, so a fine-tune that breaks what the base model already answers well is caught.

A row's ``must_contain`` lists keywords; each keyword is a string or a list of alternatives
(any one of them counts). Without ``must_contain`` the reference answer itself is the keyword.
Matching ignores case, extra whitespace and punctuation around words; a keyword must
stand as whole words ("4" does not match "14", "3" does not match "3.09").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from lorafleet.training.scoring import parse_json

__all__ = ["normalize", "contains_keyword", "row_keywords", "keyword_problem", "score_reference"]


def normalize(text: str) -> str:
    """Case-folded, NFKC, punctuation other than inside words turned to spaces, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = re.sub(r"[^\w.+%$-]+", " ", t)  # keep 3.14, c++, 50%, $5, well-known
    t = re.sub(r"(?<!\w)[.+%$-]+|[.+%$-]+(?!\w)", " ", t)  # but not a full stop or dash on its own
    return " ".join(t.split())


def contains_keyword(answer: str, keyword: str | list[str]) -> bool:
    """Whether the (normalized) answer contains the keyword, or one of its alternatives, as whole words."""
    hay = normalize(answer)
    for alt in [keyword] if isinstance(keyword, str) else keyword:
        needle = normalize(alt)
        if needle and re.search(rf"(?<!\w)(?<!\d[.,]){re.escape(needle)}(?!\w)(?![.,]\d)", hay):
            return True
    return False


def row_keywords(row: dict[str, Any], reference: str) -> list[str | list[str]]:
    """The keywords one row requires: its ``must_contain``, else the reference answer."""
    return list(row.get("must_contain") or [reference])


def keyword_problem(row: dict[str, Any]) -> str | None:
    """Why a row's ``must_contain`` is malformed, or None."""
    if "must_contain" not in row:
        return None
    kws = row["must_contain"]
    if not isinstance(kws, list) or not kws:
        return "must_contain must be a non-empty list of keywords"
    for i, k in enumerate(kws):
        alts = [k] if isinstance(k, str) else k
        if not isinstance(alts, list) or not alts or not all(isinstance(a, str) and normalize(a) for a in alts):
            return f"must_contain[{i}]={k!r}: a keyword is a non-empty string or a list of them (alternatives)"
    return None


def score_reference(answers: list[str], references: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """pass_rate (every keyword found), keyword_rate (share of all keywords found), json_answer_rate
    (answers that are a JSON object: the fine-tune's output format leaking into general prompts)."""
    n = len(answers)
    passed = found = total = as_json = 0
    failures = []
    for ans, ref, row in zip(answers, references, rows):
        kws = row_keywords(row, ref)
        hits = [contains_keyword(ans, k) for k in kws]
        found += sum(hits)
        total += len(kws)
        as_json += isinstance(parse_json(ans), dict)
        if all(hits):
            passed += 1
        elif len(failures) < 3:
            failures.append({"answer": ans[:200], "missing": [k for k, h in zip(kws, hits) if not h]})
    return {"rows": n, "pass_rate": passed / n if n else 0.0, "keyword_rate": found / total if total else 0.0,
            "json_answer_rate": as_json / n if n else 0.0, "failures": failures}
