"""Routes file, watcher and sticky variant choice: no engine needed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lorafleet.core.config import ConfigError
from lorafleet.serving.router import BUCKETS, bucket_of, choose
from lorafleet.serving.routes import Canary, Route, RoutesFile
from lorafleet.serving.routes_watch import RoutesWatcher

GOOD = """routes:
  support:
    stable: support@1
    canary: {version: support@2, weight: 5}
"""


def _route(weight: float) -> Route:
    return Route(stable="support@1", canary=Canary(version="support@2", weight=weight))


def test_sticky_choice_keeps_a_user_on_one_variant() -> None:
    route = _route(50)
    for user in (f"user-{i}" for i in range(200)):
        first = choose("support", route, user)
        assert all(choose("support", route, user) == first for _ in range(5))


def test_canary_share_matches_its_weight_over_many_users() -> None:
    route = _route(5)
    n = 20_000
    canary = sum(choose("support", route, f"u{i}").variant == "canary" for i in range(n))
    p = 0.05
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(canary - n * p) < 4 * sd, canary


def test_raising_the_weight_only_moves_users_to_the_canary() -> None:
    users = [f"u{i}" for i in range(2000)]
    at5 = {u for u in users if choose("support", _route(5), u).variant == "canary"}
    at25 = {u for u in users if choose("support", _route(25), u).variant == "canary"}
    assert at5 < at25


def test_weight_zero_and_no_canary_send_everything_to_stable() -> None:
    rng = random.Random(0)
    for route in (_route(0), Route(stable="support@1")):
        assert {choose("support", route, None, rng).variant for _ in range(500)} == {"stable"}


def test_unkeyed_requests_split_at_random() -> None:
    rng = random.Random(1)
    n = 4000
    canary = sum(choose("support", _route(50), None, rng).variant == "canary" for _ in range(n))
    assert 0.45 * n < canary < 0.55 * n


def test_bucket_is_stable_and_in_range() -> None:
    assert bucket_of("r", "alice") == bucket_of("r", "alice")
    assert all(0 <= bucket_of("r", f"k{i}") < BUCKETS for i in range(1000))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("routes: {s: {stable: 's@0'}}", "name@N"),
        ("routes: {s: {stable: 's@1', canary: {version: 's@1', weight: 5}}}", "is the stable version"),
        ("routes: {s: {stable: 's@1', canary: {version: 's@2', weight: 101}}}", "weight"),
        ("routes: {s: {stable: 's@1', colour: red}}", "colour"),
        ("routes: {'../x': {stable: 's@1'}}", "not a safe name"),
        ("routes: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_routes_files_are_refused_naming_the_problem(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RoutesFile.parse_text(text, "routes.yaml")


def test_routes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    RoutesFile.parse_text(GOOD, "t").save(path)
    again = RoutesFile.load(path)
    assert again.routes["support"].canary.weight == 5
    assert again.routes["support"].versions() == ["support@1", "support@2"]


def test_watcher_keeps_the_last_good_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    known = {"support@1", "support@2", "support@3"}

    def check(routes: RoutesFile) -> None:
        for route in routes.routes.values():
            for version in route.versions():
                if version not in known:
                    raise ValueError(f"{version} does not exist")

    watcher = RoutesWatcher(path, check)
    assert watcher.poll() and watcher.routes.routes["support"].stable == "support@1"
    path.write_text("routes: {support: {stable: support@9}}\n")  # unknown version
    assert not watcher.poll()
    assert "support@9" in watcher.last_error
    assert watcher.routes.routes["support"].stable == "support@1"
    path.write_text("routes: {support: {stable: support@3}}\n")
    assert watcher.poll() and watcher.routes.routes["support"].stable == "support@3"
    assert watcher.last_error is None


def test_watcher_refuses_an_emptied_or_missing_file_while_routes_are_in_force(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    watcher = RoutesWatcher(path)
    assert watcher.poll()
    for text in ("", "\n  \n", "# routes:\n"):  # truncated writes
        path.write_text(text)
        assert not watcher.poll() and "empty (truncated?)" in watcher.last_error
        assert watcher.routes.routes["support"].stable == "support@1"
    path.unlink()
    assert not watcher.poll() and "missing" in watcher.last_error
    path.write_text("routes: {}\n")  # said explicitly: every route goes
    assert watcher.poll() and watcher.routes.routes == {}
    path.unlink()
    assert watcher.poll() and watcher.routes.routes == {}  # nothing in force: a missing file is fine
