"""Data checks run before any compute: row shapes, chat-template rendering, token lengths,
duplicates within train, leakage of train into eval/golden, label balance, and the diversity
report (:mod:`lorafleet.training.diversity`: distinct phrasings per label, error-object coverage,
a warning when the rows look template-made).

:func:`check_data` returns a :class:`DataReport`; :meth:`DataReport.raise_on_errors` raises one
:class:`DataCheckError` naming the file and row (line) numbers of every hard error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafleet.training.config import TrainConfig
from lorafleet.training.dedup import NearDuplicateIndex, normalize_text
from lorafleet.training.diversity import DiversityReport, diversity_report
from lorafleet.training.errors import DataCheckError
from lorafleet.training.rows import Row, as_messages, chat_row_problem, dpo_row_problem, read_jsonl, user_text

__all__ = ["SplitStats", "DataReport", "check_data", "load_splits", "render_report", "render_diversity", "percentile",
           "answer_of", "label_of"]


@dataclass
class SplitStats:
    name: str
    path: Path
    rows: int
    token_p50: int = 0
    token_p95: int = 0
    token_max: int = 0
    truncated_ratio: float = 0.0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    leaked_exact: int = 0
    leaked_near: int = 0


@dataclass
class DataReport:
    splits: list[SplitStats] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    diversity: DiversityReport | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_on_errors(self) -> None:
        if self.errors:
            raise DataCheckError("data check failed: " + " | ".join(self.errors))


def percentile(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def _lines(rows: list[Row], limit: int = 15) -> str:
    shown = ", ".join(str(r.line) for r in rows[:limit])
    return shown + (f" (+{len(rows) - limit} more)" if len(rows) > limit else "")


def load_splits(cfg: TrainConfig) -> dict[str, list[Row]]:
    """Read every configured split; malformed lines and empty files raise at once."""
    paths = {"train": cfg.data.train, "eval": cfg.data.eval, "golden": cfg.data.golden}
    return {name: read_jsonl(p, name) for name, p in paths.items() if p is not None}


def _render(tokenizer: Any, data: dict, method: str) -> str:
    if method == "dpo":
        msgs = as_messages(data["prompt"], "user") + as_messages(data["chosen"], "assistant")
    else:
        msgs = data["messages"]
    return tokenizer.apply_chat_template(msgs, tokenize=False)


def answer_of(data: dict) -> Any | None:
    """The parsed JSON of a row's (chosen) answer, or None when it is not JSON."""
    msgs = data.get("messages") or as_messages(data.get("chosen", ""), "assistant")
    try:
        return json.loads(msgs[-1]["content"])
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return None


def label_of(data: dict, key: str) -> str:
    obj = answer_of(data)
    if obj is None:
        return "(not JSON)"
    return str(obj.get(key, "(none)")) if isinstance(obj, dict) else "(not an object)"


def _diversity(cfg: TrainConfig, rows: list[Row]) -> DiversityReport:
    c = cfg.checks
    return diversity_report(
        [(user_text(r.data), answer_of(r.data)) for r in rows], c.label_field, c.error_field,
        ngram=c.diversity_ngram, template_ngram_min_rows=c.template_ngram_min_rows,
        template_ngram_min_share=c.template_ngram_min_share, max_template_share=c.max_template_share,
        min_distinct_ngram_ratio=c.min_distinct_ngram_ratio, min_label_rows=c.diversity_min_label_rows)


def check_data(cfg: TrainConfig, tokenizer: Any) -> DataReport:
    """Every check on every split. ``tokenizer`` is the base's (its chat template renders the rows)."""
    report = DataReport()
    splits = load_splits(cfg)
    problem_of = dpo_row_problem if cfg.method == "dpo" else chat_row_problem
    for name, rows in splits.items():
        bad = [(r, p) for r in rows if (p := problem_of(r.data))]
        if bad:
            detail = "; ".join(f"line {r.line}: {p}" for r, p in bad[:10])
            report.errors.append(f"data.{name} {splits_path(cfg, name)}: {len(bad)} invalid row(s) at lines "
                                 f"{_lines([r for r, _ in bad])}: {detail}")
    if report.errors:
        return report

    train_index = NearDuplicateIndex(cfg.checks.near_duplicate_jaccard)
    for name, rows in splits.items():
        stats = SplitStats(name, splits_path(cfg, name), len(rows))
        lengths = [len(tokenizer(_render(tokenizer, r.data, cfg.method), add_special_tokens=False)["input_ids"]) for r in rows]
        stats.token_p50, stats.token_p95, stats.token_max = percentile(lengths, 50), percentile(lengths, 95), max(lengths)
        too_long = [r for r, n in zip(rows, lengths) if n > cfg.max_seq_length]
        stats.truncated_ratio = len(too_long) / len(rows)
        if name == "train":
            dups: list[Row] = []
            for r in rows:
                text = normalize_text(user_text(r.data))
                hit = train_index.match(text)
                if hit is None:
                    train_index.add(text, r.line)
                    continue
                dups.append(r)
                if hit[1] == "exact":
                    stats.exact_duplicates += 1
                else:
                    stats.near_duplicates += 1
            ratio = len(dups) / len(rows)
            if dups:
                msg = (f"data.train: {len(dups)} duplicate row(s) ({ratio:.1%}; {stats.exact_duplicates} exact, "
                       f"{stats.near_duplicates} near) at lines {_lines(dups)}")
                (report.errors if ratio > cfg.checks.max_duplicate_ratio else report.warnings).append(msg)
            if stats.truncated_ratio > cfg.checks.max_truncated_ratio:
                report.errors.append(
                    f"data.train: {stats.truncated_ratio:.1%} of rows exceed max_seq_length={cfg.max_seq_length} "
                    f"tokens (limit checks.max_truncated_ratio={cfg.checks.max_truncated_ratio}); lines {_lines(too_long)}")
            elif too_long:
                report.warnings.append(f"data.train: {len(too_long)} row(s) will be truncated: lines {_lines(too_long)}")
        else:
            leaked: list[tuple[Row, int, str]] = []
            for r in rows:
                hit = train_index.match(normalize_text(user_text(r.data)))
                if hit is not None:
                    leaked.append((r, hit[0], hit[1]))
            stats.leaked_exact = sum(1 for _, _, k in leaked if k == "exact")
            stats.leaked_near = len(leaked) - stats.leaked_exact
            if leaked:
                detail = ", ".join(f"line {r.line} ~ train line {t} ({k})" for r, t, k in leaked[:10])
                report.errors.append(f"data.{name}: {len(leaked)} row(s) leak from train: {detail}")
            if too_long:
                report.warnings.append(f"data.{name}: {len(too_long)} row(s) exceed max_seq_length: lines {_lines(too_long)}")
        report.splits.append(stats)

    if cfg.checks.label_field:
        counts: dict[str, int] = {}
        for r in splits["train"]:
            label = label_of(r.data, cfg.checks.label_field)
            counts[label] = counts.get(label, 0) + 1
        report.labels = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        total = len(splits["train"])
        floor = cfg.checks.min_label_share
        if floor is not None:
            rare = [f"{k} ({v / total:.1%})" for k, v in counts.items() if v / total < floor]
            if rare:
                report.errors.append(f"checks.label_field={cfg.checks.label_field!r}: labels below "
                                     f"min_label_share={floor}: {', '.join(rare)}")
        report.diversity = _diversity(cfg, splits["train"])
        report.warnings.extend(report.diversity.warnings)
    return report


def splits_path(cfg: TrainConfig, name: str) -> Path:
    return getattr(cfg.data, name)


def render_report(report: DataReport, console: Any) -> None:
    """Print the report as rich tables (split statistics, label balance, warnings, errors)."""
    from rich.table import Table

    if report.splits:
        t = Table("split", "rows", "tokens P50", "P95", "max", "truncated", "dup exact", "dup near",
                  "leak exact", "leak near", title="data check")
        for s in report.splits:
            t.add_row(s.name, str(s.rows), str(s.token_p50), str(s.token_p95), str(s.token_max),
                      f"{s.truncated_ratio:.1%}", str(s.exact_duplicates), str(s.near_duplicates),
                      str(s.leaked_exact), str(s.leaked_near))
        console.print(t)
    if report.labels:
        total = sum(report.labels.values())
        lt = Table("label", "rows", "share", title="train label balance")
        for k, v in report.labels.items():
            lt.add_row(k, str(v), f"{v / total:.1%}")
        console.print(lt)
    if report.diversity is not None:
        render_diversity(report.diversity, console)
    for w in report.warnings:
        console.print(f"[yellow]warning[/yellow] {w}")
    for e in report.errors:
        console.print(f"[red]error[/red] {e}")


def render_diversity(d: DiversityReport, console: Any) -> None:
    """The per-label diversity table and the label x error-object coverage table."""
    from rich.table import Table

    t = Table("label", "rows", "distinct phrasings", "template-made", "distinct n-gram ratio", "vocabulary",
              title=f"train diversity (template-made rows overall: {d.template_share:.1%})")
    for x in d.labels:
        t.add_row(x.label, str(x.rows), str(x.distinct_skeletons), f"{x.template_share:.1%}" + ("" if x.judged else " *"),
                  f"{x.distinct_ngram_ratio:.2f}", str(x.vocabulary))
    console.print(t)
    if d.coverage:
        c = Table("nearest label", *d.error_values, title="error objects (hard negatives) by nearest label")
        for label, cells in d.coverage.items():
            c.add_row(label, *(str(cells.get(e, 0)) for e in d.error_values))
        console.print(c)
