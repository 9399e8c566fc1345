"""deploy/grafana: the dashboard JSON files are exactly what lorafleet.platform.dashboards
generates (the Python is the source of truth), and their panels only name metrics the gateway
declares. That every panel returns data is shown against a live Prometheus in
tests/integration/test_dashboards_live.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lorafleet.platform.dashboards import DASHBOARDS, grafana_json

FOLDER = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"


def test_json_files_are_generated_from_the_python() -> None:
    on_disk = {p.stem for p in FOLDER.glob("*.json")}
    assert on_disk == set(DASHBOARDS), "regenerate: python -m lorafleet.platform.dashboards deploy/grafana/dashboards"
    for uid in DASHBOARDS:
        assert json.loads((FOLDER / f"{uid}.json").read_text()) == grafana_json(uid), (
            f"{uid}.json is stale: python -m lorafleet.platform.dashboards deploy/grafana/dashboards")


def test_panels_only_name_metrics_the_gateway_declares() -> None:
    from lorafleet.serving.metrics import GatewayMetrics

    declared = {m.name for m in GatewayMetrics().registry.collect()}
    exprs = [p.expr for _title, panels in DASHBOARDS.values() for p in panels]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\b(lorafleet_\w+)", e)}
    assert used and used <= declared, used - declared
