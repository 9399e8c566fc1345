"""The evaluation gate: the config's thresholds on the held-out scores and on each suite's scores,
the golden pass rate of the adapter not below the base's, and suites compared with the base
(``max_drop_vs_base``). A threshold whose score is missing fails, naming the missing score."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from lorafleet.training.config import GateSettings, SuiteGate

__all__ = ["GateCheck", "GateResult", "apply_gate", "suite_checks"]


@dataclass
class GateCheck:
    name: str
    value: float | None
    threshold: float | None
    op: str  # ">=" or "<="
    passed: bool
    metric: str = ""  # the row of the base-vs-adapter table it judges (default: name)
    note: str = ""  # why it failed when a score is missing

    def describe(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.3f}"
        need = "n/a" if self.threshold is None else f"{self.threshold:.3f}"
        return f"{self.name}={shown} (needs {self.op} {need}{'; ' + self.note if self.note else ''})"


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    forced: bool = False

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return "gate passed"
        return "gate failed: " + "; ".join(c.describe() for c in self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "forced": self.forced, "checks": [asdict(c) for c in self.checks]}


def _check(name: str, value: float | None, threshold: float | None, op: str, metric: str = "",
           missing: str = "") -> GateCheck:
    if value is None or threshold is None:
        return GateCheck(name, value, threshold, op, False, metric or name, missing or f"no {name} score")
    ok = value >= threshold if op == ">=" else value <= threshold
    return GateCheck(name, value, threshold, op, ok, metric or name)


def suite_checks(name: str, sg: SuiteGate, adapter: dict[str, Any] | None, base: dict[str, Any] | None) -> list[GateCheck]:
    """The checks of one suite's thresholds on its adapter (and base) scores; None: the suite was not scored."""
    a, b = adapter or {}, base or {}
    why = "" if adapter is not None else f"suite {name} has no adapter scores"
    checks = []
    for key in ("pass_rate", "json_parse_rate", "schema_pass_rate"):
        floor = getattr(sg, f"min_{key}")
        if floor is not None:
            checks.append(_check(f"{name}.{key}", a.get(key), floor, ">=", missing=why))
    for f, floor in sg.min_field_match.items():
        checks.append(_check(f"{name}.field_match.{f}", a.get("field_match", {}).get(f), floor, ">=",
                             metric=f"{name}.match.{f}", missing=why))
    if sg.max_leak_rate is not None:
        checks.append(_check(f"{name}.leak_rate", a.get("leak_rate"), sg.max_leak_rate, "<=", missing=why))
    if sg.max_drop_vs_base is not None:
        mine, theirs = a.get("pass_rate"), b.get("pass_rate")
        missing = why or ("" if theirs is not None else f"the base's {name}.pass_rate is missing")
        floor = None if theirs is None else round(theirs - sg.max_drop_vs_base, 6)
        checks.append(_check(f"{name}.pass_rate_vs_base", mine, floor, ">=", metric=f"{name}.pass_rate",
                             missing=missing))
    return checks


def apply_gate(gate: GateSettings, adapter: dict[str, Any], base: dict[str, Any], eval_loss: float | None,
               evaluated: Collection[str] = ()) -> GateResult:
    """``adapter``/``base``: {set: scores} from evaluation (``eval`` is the held-out set); ``evaluated``:
    the sets the evaluation ran (a set named there but missing from the scores fails its checks)."""
    held = adapter.get("eval", {})
    checks = []
    if gate.min_json_parse_rate is not None:
        checks.append(_check("eval.json_parse_rate", held.get("json_parse_rate"), gate.min_json_parse_rate, ">="))
    if gate.min_schema_pass_rate is not None:
        checks.append(_check("eval.schema_pass_rate", held.get("schema_pass_rate"), gate.min_schema_pass_rate, ">="))
    for f, floor in gate.min_field_match.items():
        checks.append(_check(f"eval.field_match.{f}", held.get("field_match", {}).get(f), floor, ">=",
                             metric=f"eval.match.{f}"))
    if gate.max_eval_loss is not None:
        checks.append(_check("eval_loss", eval_loss, gate.max_eval_loss, "<=", metric="eval.loss"))
    if gate.golden_not_below_base and ("golden" in evaluated or "golden" in adapter or "golden" in base):
        mine = (adapter.get("golden") or {}).get("pass_rate")
        theirs = (base.get("golden") or {}).get("pass_rate")
        missing = ", ".join(f"the {who}'s golden.pass_rate" for who, v in (("adapter", mine), ("base", theirs))
                            if v is None)
        checks.append(_check("golden.pass_rate", mine, theirs, ">=", missing=f"{missing} is missing" if missing else ""))
    for name, sg in gate.suites.items():
        checks.extend(suite_checks(name, sg, adapter.get(name), base.get(name)))
    return GateResult(all(c.passed for c in checks), checks)
