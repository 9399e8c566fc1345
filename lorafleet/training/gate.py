"""The evaluation gate: thresholds from the config on the held-out scores, and the golden pass
rate of the adapter not below the base's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lorafleet.training.config import GateSettings

__all__ = ["GateCheck", "GateResult", "apply_gate"]


@dataclass
class GateCheck:
    name: str
    value: float | None
    threshold: float
    op: str  # ">=" or "<="
    passed: bool


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
        return "gate failed: " + "; ".join(
            f"{c.name}={'n/a' if c.value is None else f'{c.value:.3f}'} (needs {c.op} {c.threshold:.3f})"
            for c in self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "forced": self.forced, "checks": [asdict(c) for c in self.checks]}


def _check(name: str, value: float | None, threshold: float, op: str) -> GateCheck:
    ok = value is not None and (value >= threshold if op == ">=" else value <= threshold)
    return GateCheck(name, value, threshold, op, ok)


def apply_gate(gate: GateSettings, adapter: dict[str, Any], base: dict[str, Any],
               eval_loss: float | None) -> GateResult:
    """``adapter``/``base``: {split: scores} from evaluation; thresholds apply to the ``eval`` split."""
    held = adapter.get("eval", {})
    checks = []
    if gate.min_json_parse_rate is not None:
        checks.append(_check("eval.json_parse_rate", held.get("json_parse_rate"), gate.min_json_parse_rate, ">="))
    if gate.min_schema_pass_rate is not None:
        checks.append(_check("eval.schema_pass_rate", held.get("schema_pass_rate"), gate.min_schema_pass_rate, ">="))
    for f, floor in gate.min_field_match.items():
        checks.append(_check(f"eval.field_match.{f}", held.get("field_match", {}).get(f), floor, ">="))
    if gate.max_eval_loss is not None:
        checks.append(_check("eval_loss", eval_loss, gate.max_eval_loss, "<="))
    if gate.golden_not_below_base and "golden" in adapter and "golden" in base:
        checks.append(_check("golden.pass_rate", adapter["golden"]["pass_rate"], base["golden"]["pass_rate"], ">="))
    return GateResult(all(c.passed for c in checks), checks)
