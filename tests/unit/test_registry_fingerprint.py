"""The fingerprint model, its PSI helper, and the routes-file scan gc relies on (no model needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lorafleet.registry import TOKEN_LENGTH_EDGES, Fingerprint, Histogram, histogram, psi
from lorafleet.registry.errors import RegistryError
from lorafleet.registry.refs import library_versions, routed_versions, versions_named_in


def test_histogram_buckets_are_upper_inclusive() -> None:
    assert histogram([1, 8, 9, 16, 17, 5000], [8, 16]) == [2, 2, 2]
    h = Histogram.of([10, 20, 30])
    assert len(h.counts) == len(TOKEN_LENGTH_EDGES) + 1 and sum(h.counts) == 3 and h.mean == 20


def test_psi_is_zero_for_the_same_shape_and_large_for_a_shift() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([100, 0, 0], [0, 0, 100]) > 0.25
    moderate = psi([50, 30, 20], [40, 35, 25])
    assert 0 < moderate < 0.1
    assert psi([0, 0], [1, 1]) == 0.0  # nothing to compare against
    with pytest.raises(ValueError, match="buckets"):
        psi([1, 2], [1, 2, 3])


def test_histograms_must_match_their_edges() -> None:
    with pytest.raises(ValidationError, match="len\\(edges\\) \\+ 1"):
        Histogram(edges=[8, 16], counts=[1, 2])
    with pytest.raises(ValidationError, match="ascending"):
        Histogram(edges=[16, 8], counts=[1, 2, 3])


def test_fingerprint_round_trips_and_compares_live_values() -> None:
    fp = Fingerprint.model_validate({
        "rows": 4, "features": {"prompt_tokens": Histogram.of([10, 12, 20, 30]).model_dump()},
        "turns_per_example": {"edges": [1, 2], "counts": [0, 4, 0]}, "embedding_centroid": [0.1, 0.2],
        "label_field": "intent",  # training adds keys of its own: kept
    })
    again = Fingerprint.model_validate_json(fp.model_dump_json())
    assert again == fp and again.model_extra == {"label_field": "intent"}
    assert fp.psi("prompt_tokens", [10, 12, 20, 30]) == pytest.approx(0.0)
    assert fp.psi("prompt_tokens", [900] * 50) > 1.0
    assert fp.psi("completion_tokens", [1]) is None


def test_routes_scan_finds_every_version_string(tmp_path) -> None:
    doc = {"routes": {"support": {"stable": "intents@3", "canary": {"version": "intents@12", "weight": 5}},
                      "other": {"stable": "smollm2-135m-instruct"}},
           "history": ["note: was faq@1 before", "x@y", "intents@stable"]}
    assert versions_named_in(doc) == {"intents@3", "intents@12", "faq@1"}
    routes = tmp_path / "routes.yaml"
    assert routed_versions(routes) == set()  # no routes file: nothing routed
    routes.write_text("routes:\n  a: {stable: 'faq@2'}\n")
    assert routed_versions(routes) == {"faq@2"}
    routes.write_text("routes: [unclosed\n")
    with pytest.raises(RegistryError, match="refusing to gc"):
        routed_versions(routes)


def test_library_versions_come_from_metadata() -> None:
    from importlib.metadata import version

    got = library_versions()
    assert got["peft"] == version("peft") and got["torch"] == version("torch")
