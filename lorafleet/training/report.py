"""The base-vs-adapter table of an eval report (what `platform train` prints and `platform registry
show` shows): one row per metric of every evaluated set, and the gate's verdict on that row."""

from __future__ import annotations

from typing import Any

__all__ = ["comparison_rows", "gate_marks", "report_table", "report_lines", "set_lines", "gate_line"]

# rates shown per set, in this order, when the set's scorer reports them
RATES = ("json_parse_rate", "schema_pass_rate", "pass_rate", "keyword_rate", "json_answer_rate",
         "refusal_rate", "leak_rate")


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _set_order(evaluation: dict[str, Any]) -> list[str]:
    adapter = evaluation.get("adapter", {}) or {}
    order = list(evaluation.get("sets") or [])
    order += [n for n in ("eval", "golden") if n in adapter and n not in order]
    order += [n for n in adapter if n not in order]
    return [n for n in order if n in adapter]


def comparison_rows(evaluation: dict[str, Any], train_metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, base, adapter) rows: eval loss, then each set's rates and field matches."""
    rows = []
    if "eval_loss" in train_metrics:
        rows.append(("eval.loss", _fmt(train_metrics.get("base_eval_loss")), _fmt(train_metrics["eval_loss"])))
    base, ad = evaluation.get("base", {}) or {}, evaluation.get("adapter", {}) or {}
    for name in _set_order(evaluation):
        b, a = base.get(name) or {}, ad[name]
        for key in RATES:
            if key in a:
                rows.append((f"{name}.{key}", _fmt(b.get(key)), _fmt(a[key])))
        for f, v in a.get("field_match", {}).items():
            rows.append((f"{name}.match.{f}", _fmt(b.get("field_match", {}).get(f)), _fmt(v)))
    return rows


def gate_marks(gate: dict[str, Any] | None) -> dict[str, str]:
    """{table row: "ok" or "FAIL (needs >= X)"} from a gate result's checks (several checks on one row: all shown)."""
    marks: dict[str, list[str]] = {}
    for c in (gate or {}).get("checks", []):
        metric = c.get("metric") or c["name"].replace(".field_match.", ".match.")
        need = "n/a" if c.get("threshold") is None else f"{c['threshold']:.3f}"
        vs = " vs base" if c["name"].endswith("_vs_base") else ""
        text = f"ok{vs}" if c.get("passed") else f"FAIL{vs} (needs {c['op']} {need})"
        marks.setdefault(metric, []).append(text)
    return {k: "; ".join(v) for k, v in marks.items()}


def _all_rows(evaluation: dict[str, Any], train_metrics: dict[str, Any], marks: dict[str, str]) -> list[tuple]:
    rows = comparison_rows(evaluation, train_metrics)
    shown = {r[0] for r in rows}
    return rows + [(m, "-", "-") for m in marks if m not in shown]


def report_lines(evaluation: dict[str, Any], train_metrics: dict[str, Any], gate: dict[str, Any] | None) -> list[str]:
    """The same table as plain aligned text (metric, base, adapter, gate), for `registry show`."""
    marks = gate_marks(gate)
    rows = _all_rows(evaluation, train_metrics, marks)
    if not rows:
        return []
    width = max(len("metric"), *(len(r[0]) for r in rows))
    out = [f"{'metric':<{width}}  {'base':>7}  {'adapter':>7}  gate"]
    out += [f"{m:<{width}}  {b:>7}  {a:>7}  {marks.get(m, '')}".rstrip() for m, b, a in rows]
    return out


def set_lines(evaluation: dict[str, Any]) -> list[str]:
    """One line per evaluated set: name, how it is scored, rows, file and its hash."""
    from pathlib import Path

    ad = evaluation.get("adapter", {}) or {}
    out = []
    for name in _set_order(evaluation):
        a = ad[name]
        where = f"{Path(a['path']).name} sha256 {a['sha256'][:12]}" if a.get("path") else ""
        out.append(f"{name:<12} {a.get('scoring', 'structured'):<10} {a.get('rows', '-'):>5} rows  {where}".rstrip())
    return out


def gate_line(gate: dict[str, Any] | None) -> str:
    """passed / FAILED (pushed with --force), and every failed check with its score and threshold."""
    if not gate:
        return "not recorded"
    failed = [c for c in gate.get("checks", []) if not c.get("passed")]
    head = "passed" if gate.get("passed") else "FAILED" + (" (pushed with --force)" if gate.get("forced") else "")
    if not failed:
        return f"{head} ({len(gate.get('checks', []))} checks)"

    def one(c: dict) -> str:
        v = "n/a" if c.get("value") is None else f"{c['value']:.3f}"
        need = "n/a" if c.get("threshold") is None else f"{c['threshold']:.3f}"
        note = f"; {c['note']}" if c.get("note") else ""
        return f"{c['name']}={v} (needs {c['op']} {need}{note})"

    return f"{head}: " + "; ".join(one(c) for c in failed)


def report_table(evaluation: dict[str, Any], train_metrics: dict[str, Any], gate: dict[str, Any] | None,
                 title: str) -> Any:
    """A rich Table: metric, base, adapter, gate (a gated metric with no score still gets its row)."""
    from rich.table import Table

    marks = gate_marks(gate)
    rows = _all_rows(evaluation, train_metrics, marks)
    table = Table("metric", "base", "adapter", "gate", title=title)
    for metric, b, a in rows:
        mark = marks.get(metric, "")
        table.add_row(metric, b, a, f"[red]{mark}[/red]" if "FAIL" in mark else mark)
    return table
