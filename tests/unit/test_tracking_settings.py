"""MLflow tracking's pure parts: where the URI comes from, how reports are flattened, and the one-line
error for a URI where no server answers (a real closed port)."""

from __future__ import annotations

import pytest

from lorafleet.engine.process import free_port
from lorafleet.training.config import TrackingSettings, TrainConfig
from lorafleet.training.errors import TrainConfigError
from lorafleet.training.tracking import RunTracker, flatten, numeric_items, resolve_tracking_uri


def test_config_field_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(TrackingSettings()) == ("http://env:5000", "MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(TrackingSettings(mlflow_uri="http://cfg:5000")) == ("http://cfg:5000", "tracking.mlflow_uri")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(TrackingSettings()) is None


def test_reports_flatten_to_metric_names():
    report = {"adapter": {"golden": {"pass_rate": 0.5, "rows": 2, "field_match": {"intent": 1.0},
                                     "samples": [{"answer": "x"}]}}, "base": {"golden": {"ok": True, "nan": float("nan")}}}
    assert flatten({"a": {"b": [1, 2]}}) == {"a.b": [1, 2]}
    assert numeric_items(report, "eval") == {"eval.adapter.golden.pass_rate": 0.5, "eval.adapter.golden.rows": 2.0,
                                             "eval.adapter.golden.field_match.intent": 1.0, "eval.base.golden.ok": 1.0}


def test_no_server_at_the_uri_is_one_line_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = TrainConfig(output_name="x", data={"train": tmp_path / "t.jsonl"}, tracking={"mlflow_uri": uri})
    with pytest.raises(TrainConfigError, match=rf"tracking.mlflow_uri='{uri}': no MLflow server answers there"):
        RunTracker.start(cfg)
    assert RunTracker.start(cfg.model_copy(update={"tracking": TrackingSettings()})) is None
