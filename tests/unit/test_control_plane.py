"""Routes-file edits, canary judgement and metrics reading: no engine needed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lorafleet.platform.control.analysis import judge, variant_versions
from lorafleet.platform.errors import PlatformError
from lorafleet.platform.control.observe import Scrape, VariantFigures, figures
from lorafleet.platform.control.progressive import parse_duration_s, parse_steps
from lorafleet.platform.control.promotion import parse_percent
from lorafleet.platform.control.routes_edit import edit_route, history
from lorafleet.core.errors import InputError
from lorafleet.serving.routes import Analysis, Canary, Route, RoutesFile


def test_edit_route_writes_diffs_and_history(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    change = edit_route(routes, "support", lambda _cur: Route(stable="base-x", canary=Canary(version="support@1", weight=5)),
                        actor="ann", reason="first canary", kind="canary")
    assert "+      version: support@1" in change.diff
    assert RoutesFile.load(routes).routes["support"].canary.weight == 5
    entry = history(routes, "support")[-1]
    assert entry["actor"] == "ann" and entry["reason"] == "first canary" and entry["before"] is None


def test_a_refused_change_leaves_the_file_untouched(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    edit_route(routes, "s", lambda _c: Route(stable="s@1"), actor="a", reason="r", kind="full")
    before = routes.read_bytes()

    def refuse(_cur):
        raise PlatformError("no")

    with pytest.raises(PlatformError):
        edit_route(routes, "s", refuse, actor="a", reason="r", kind="full")

    def invalid(cur):  # canary == stable is refused by the Route validator
        cur.stable = "s@1"
        return Route.model_construct(stable="s@1", canary=Canary(version="s@1", weight=5))

    with pytest.raises(PlatformError, match="stable"):
        edit_route(routes, "s", invalid, actor="a", reason="r", kind="canary")
    assert routes.read_bytes() == before
    assert len(history(routes)) == 1


def test_an_invalid_routes_file_is_never_overwritten(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [broken\n")
    with pytest.raises(PlatformError, match="invalid"):
        edit_route(routes, "s", lambda _c: Route(stable="s@1"), actor="a", reason="r", kind="full")
    assert routes.read_text() == "routes: [broken\n"


@pytest.mark.parametrize("text", ["-1", "101", "abc", "5%%"])
def test_bad_percentages_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="--canary"):
        parse_percent(text)


def test_percent_steps_and_durations() -> None:
    assert parse_percent("5%") == 5.0 and parse_percent(0) == 0.0
    assert parse_steps("5,25,50,100") == [5, 25, 50, 100]
    assert parse_duration_s("10m") == 600 and parse_duration_s("30s") == 30 and parse_duration_s("2") == 2
    for bad in ("25,5", "0,5"):
        with pytest.raises(InputError):
            parse_steps(bad)
    with pytest.raises(InputError):
        parse_duration_s("ten minutes")


def _figs(requests: int, errors: int = 0, fails: int = 0, slow: bool = False, psi: float | None = None):
    buckets = {0.1: 0.0 if slow else requests, 1.0: requests, math.inf: requests}
    return VariantFigures(version="v", requests=requests, errors=errors, schema_checks=requests,
                          schema_failures=fails, buckets=buckets, drift_psi=psi)


def test_judge_waits_passes_and_fails_with_reasons() -> None:
    cfg = Analysis(min_requests=20)
    assert judge(_figs(100), _figs(5), cfg).decision == "wait"
    assert judge(_figs(100, errors=1), _figs(40, errors=0), cfg).decision == "pass"
    bad = judge(_figs(100), _figs(40, errors=10, fails=20, slow=True, psi=0.9), cfg)
    assert bad.decision == "fail"
    text = " ".join(bad.reasons)
    for needle in ("error rate", "schema-failure rate", "p95 latency", "drift"):
        assert needle in text


def _scrape(at: float, n_stable: float, n_canary: float, fail_canary: float) -> Scrape:
    s = []
    for variant, version, n in (("stable", "base", n_stable), ("canary", "r@2", n_canary)):
        s.append(("lorafleet_requests_total", {"route": "r", "version": version, "variant": variant,
                                               "tenant": "open", "status": "200"}, n))
        s.append(("lorafleet_schema_checks_total", {"route": "r", "version": version, "variant": variant}, n))
        for le, frac in (("0.1", 0.5), ("1.0", 1.0), ("+Inf", 1.0)):
            s.append(("lorafleet_request_duration_seconds_bucket",
                      {"route": "r", "version": version, "variant": variant, "le": le}, n * frac))
    s.append(("lorafleet_schema_failures_total", {"route": "r", "version": "r@2", "variant": "canary",
                                                  "reason": "not_json"}, fail_canary))
    s.append(("lorafleet_requests_total", {"route": "r", "version": "r@1", "variant": "canary", "tenant": "open",
                                           "status": "500"}, 999))  # an older canary: never mixed in
    return Scrape(at, s)


def test_figures_are_interval_deltas_per_version() -> None:
    route = Route(stable="base-x", canary=Canary(version="r@2", weight=5))
    versions = variant_versions(route)
    assert versions == {"stable": "base", "canary": "r@2"}
    figs = figures(_scrape(10, 1000, 50, 5), _scrape(0, 400, 10, 1), "r", versions)
    assert figs["stable"].requests == 600 and figs["canary"].requests == 40
    assert figs["canary"].errors == 0
    assert figs["canary"].schema_failure_rate == pytest.approx(4 / 40)
    assert figs["stable"].request_rate == 60
    assert figs["canary"].latency_quantile_s(0.95) == 1.0


def test_a_canary_that_cannot_load_fails_at_once() -> None:
    cfg = Analysis(min_requests=20)
    canary = VariantFigures(version="r@2", fallbacks=3)  # no request got an answer from it at all
    verdict = judge(_figs(100), canary, cfg)
    assert verdict.decision == "fail" and "r@2 could not be loaded" in verdict.reasons[0]
    fallbacks = ("lorafleet_canary_fallbacks_total", {"route": "r", "version": "r@2"})
    now = Scrape(10, [*_scrape(10, 100, 0, 0).samples, (*fallbacks, 7.0)])
    before = Scrape(0, [*_scrape(0, 50, 0, 0).samples, (*fallbacks, 2.0)])
    figs = figures(now, before, "r", {"stable": "base", "canary": "r@2"})
    assert figs["canary"].fallbacks == 5 and figs["stable"].fallbacks == 0
