"""Scores of generated answers against references: JSON parse rate, JSON-schema pass rate,
exact match of named fields, and the golden pass rate (the whole object matches)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json", "cannot_become_json", "score_answers"]


def parse_json(text: str) -> Any | None:
    """The JSON value of an answer (a ```json fence is tolerated), or None."""
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`")
        t = t[4:] if t.startswith("json") else t
    try:
        return json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return None


# What json.loads accepts as a whole document that starts with a letter (Python's json takes NaN and Infinity).
_JSON_WORDS = ("true", "false", "null", "NaN", "Infinity")


def cannot_become_json(text: str) -> bool:
    """True when no continuation of ``text`` can make :func:`parse_json` succeed: its first non-blank
    character starts no JSON value and no ```` ``` ```` fence ("Sure, here is..."). An evaluation stops
    generating such an answer: the rest of it cannot change its score."""
    t = text.lstrip()
    if not t or t[0] in '{["-0123456789`':
        return False
    return not any(word.startswith(t[: len(word)]) for word in _JSON_WORDS)


def score_answers(answers: list[str], references: list[str], schema: dict | None,
                  fields: list[str]) -> dict[str, Any]:
    """Rates over the rows (each 0..1) and the number of rows."""
    validator = None
    if schema is not None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(schema)
    n = len(answers)
    parsed = schema_ok = exact = 0
    field_hits = {f: 0 for f in fields}
    for ans, ref in zip(answers, references):
        got, want = parse_json(ans), parse_json(ref)
        if got is not None:
            parsed += 1
            if validator is not None and validator.is_valid(got):
                schema_ok += 1
        g = got if isinstance(got, dict) else {}
        w = want if isinstance(want, dict) else {}
        for f in fields:
            if got is not None and g.get(f) == w.get(f):
                field_hits[f] += 1
        if (want is not None and got == want) or (want is None and ans.strip() == ref.strip()):
            exact += 1
    rate = (lambda k: k / n if n else 0.0)
    out: dict[str, Any] = {"rows": n, "json_parse_rate": rate(parsed), "pass_rate": rate(exact)}
    if validator is not None:
        out["schema_pass_rate"] = rate(schema_ok)
    out["field_match"] = {f: rate(k) for f, k in field_hits.items()}
    return out
