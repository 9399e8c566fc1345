"""The evaluation sets of one config, read and scored: the held-out set (``data.eval``, name
``eval``), the golden set (``data.golden``, name ``golden``) and every suite of ``eval.suites``
(``hard``, ``regression``, ``safety``, ...), each scored by the scorer of its kind:

- structured: :func:`lorafleet.training.scoring.score_answers` (JSON parse, schema, fields, whole object)
- reference:  :func:`lorafleet.training.reference.score_reference` (required keywords)
- safety:     :func:`lorafleet.training.safety.score_safety` (refusal, no PII, no forbidden string)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_bytes
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import DataCheckError
from lorafleet.training.reference import keyword_problem, score_reference
from lorafleet.training.rows import as_messages, chat_row_problem, read_jsonl
from lorafleet.training.safety import forbidden_problem, score_safety
from lorafleet.training.scoring import score_answers

__all__ = ["EvalSet", "load_eval_sets", "score_set", "SAMPLES"]

SAMPLES = 3  # answers kept per set in the report


@dataclass
class EvalSet:
    """Prompts (chat messages up to the final assistant turn), reference answers and raw rows of one set."""

    name: str
    path: Path
    scoring: str
    prompts: list[list[dict]]
    references: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    max_new_tokens: int = 64
    fields: list[str] = field(default_factory=list)
    sha256: str = ""

    def describe(self) -> dict[str, Any]:
        """What identifies the set in the report: file, its hash, how it is scored."""
        return {"path": str(self.path), "sha256": self.sha256, "scoring": self.scoring}


def _split_rows(name: str, path: Path, max_rows: int | None) -> tuple[list, list, list]:
    """held-out / golden rows: chat rows or DPO preference rows (the chosen answer is the reference)."""
    prompts, refs, rows = [], [], []
    for r in read_jsonl(path, name)[:max_rows]:
        d = r.data
        if "messages" in d:
            prompts.append(d["messages"][:-1])
            refs.append(d["messages"][-1]["content"])
        else:
            prompts.append(as_messages(d["prompt"], "user"))
            refs.append("".join(m["content"] for m in as_messages(d["chosen"], "assistant")))
        rows.append(d)
    return prompts, refs, rows


def _suite_rows(name: str, path: Path, scoring: str, max_rows: int | None) -> tuple[list, list, list]:
    """Suite rows: chat rows ending with the reference answer, plus the keys of their kind."""
    where = f"eval.suites.{name}"
    if not path.is_file():
        raise DataCheckError(f"{where}.path: {path}: no such file")
    check = {"reference": keyword_problem, "safety": forbidden_problem}.get(scoring)
    prompts, refs, rows, bad = [], [], [], []
    try:
        parsed = read_jsonl(path, "suite")[:max_rows]
    except DataCheckError as err:  # read_jsonl names its files data.<split>
        raise DataCheckError(str(err).replace("data.suite", where, 1)) from None
    for r in parsed:
        problem = chat_row_problem(r.data) or (check(r.data) if check else None)
        if problem:
            bad.append(f"line {r.line}: {problem}")
            continue
        prompts.append(r.data["messages"][:-1])
        refs.append(r.data["messages"][-1]["content"])
        rows.append(r.data)
    if bad:
        raise DataCheckError(f"{where}: {path}: " + "; ".join(bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""))
    return prompts, refs, rows


def load_eval_sets(cfg: TrainConfig) -> list[EvalSet]:
    """Every set the config evaluates, in report order: eval, golden, then the suites as written."""
    ev = cfg.eval
    sets = []
    for name in ("eval", "golden"):
        path = getattr(cfg.data, name)
        if path is not None:
            prompts, refs, rows = _split_rows(name, path, ev.max_rows)
            sets.append(EvalSet(name, path, "structured", prompts, refs, rows, ev.max_new_tokens,
                                list(ev.exact_match_fields), sha256_bytes(path.read_bytes())))
    for name, suite in ev.suites.items():
        prompts, refs, rows = _suite_rows(name, suite.path, suite.scoring, ev.max_rows)
        fields = ev.exact_match_fields if suite.exact_match_fields is None else suite.exact_match_fields
        sets.append(EvalSet(name, suite.path, suite.scoring, prompts, refs, rows,
                            suite.max_new_tokens or ev.max_new_tokens, list(fields),
                            sha256_bytes(suite.path.read_bytes())))
    return sets


def score_set(s: EvalSet, answers: list[str], schema: dict | None) -> dict[str, Any]:
    """The scores of one set's answers (rates 0..1, ``rows``), with the set's identity and a few samples."""
    if s.scoring == "structured":
        scores = score_answers(answers, s.references, schema, s.fields)
    elif s.scoring == "reference":
        scores = score_reference(answers, s.references, s.rows)
    elif s.scoring == "safety":
        scores = score_safety(answers, s.references, s.rows)
    else:  # the config's Literal makes this unreachable from YAML
        raise DataCheckError(f"eval.suites.{s.name}.scoring={s.scoring!r}: not structured, reference or safety")
    scores.update(s.describe())
    scores["samples"] = [{"answer": a[:200], "reference": r} for a, r in list(zip(answers, s.references))[:SAMPLES]]
    return scores
