"""The load test's arithmetic and plot (loadtests/run.py), on made-up request records."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.plot import plot
from loadtests.report import canary_share, summarise
from loadtests.run import parse_duration


def records() -> list[dict]:
    rows = []
    for i in range(200):
        variant = "canary" if i % 20 == 0 else "stable"
        rows.append({"t": 1000.0 + i * 0.1, "name": "chat support-intents", "route": "support-intents",
                     "variant": variant, "version": "support-intents@2" if variant == "canary" else "base",
                     "status": 200, "latency_s": 0.5 + (i % 10) / 100, "ttft_s": None})
    for i in range(50):
        rows.append({"t": 1000.0 + i * 0.4, "name": "completion base", "route": "base", "variant": "base",
                     "version": "base", "status": 503 if i == 7 else 200, "latency_s": 0.2, "ttft_s": 0.05})
    for r in rows:
        r["t_end"] = r["t"] + r["latency_s"]
    return rows


def test_parse_duration() -> None:
    assert parse_duration("60s") == 60 and parse_duration("2m") == 120 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_summary_counts_rates_percentiles_and_canary_share() -> None:
    locust = {"completion base": {"Request Count": "50", "Failure Count": "1"},
              "Aggregated": {"Request Count": "250", "Failure Count": "1"}}
    s = summarise(records(), locust)
    by = {t["name"]: t for t in s["types"]}
    assert by["chat support-intents"]["requests"] == 200 and by["chat support-intents"]["failures"] == 0
    assert by["completion base"]["failures"] == 1 and by["completion base"]["ttft_p50_s"] == pytest.approx(0.05)
    total = s["total"]
    assert total["requests"] == 250 and total["failures"] == 1 and total["locust_requests"] == 250
    assert total["span_s"] == pytest.approx(19.9 + 0.59)
    assert total["rps"] == pytest.approx(250 / total["span_s"])
    assert 0.5 <= total["p50_s"] <= total["p95_s"] <= total["p99_s"] <= 0.59
    assert total["concurrency_mean"] == pytest.approx(sum(r["latency_s"] for r in records()) / total["span_s"])
    share = canary_share(records(), "support-intents")
    assert share == {"route": "support-intents", "requests": 200, "canary": 10, "share": 0.05}


def test_plot_is_written(tmp_path: Path) -> None:
    png = plot(records(), {"support-intents": 5.0}, tmp_path / "l.png", "test")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_in_flight_peak_counts_back_to_back_requests_once() -> None:
    from benchmarks.reliability import max_in_flight

    one_user = [{"t": 10.0 + i, "t_end": 11.0 + i} for i in range(5)]  # each starts as the last one ends
    two_users = one_user + [{"t": 10.5, "t_end": 12.5}]
    assert max_in_flight(one_user) == 1 and max_in_flight(two_users) == 2
