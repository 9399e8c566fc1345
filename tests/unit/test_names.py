"""The one name@N grammar (lorafleet.core.names) holds in the registry, the routes file and gc."""

from __future__ import annotations

import pytest

from lorafleet.core.errors import InputError
from lorafleet.core.names import is_version_ref, parse_version_ref, split_ref
from lorafleet.registry.refs import versions_named_in
from lorafleet.registry.store import parse_ref
from lorafleet.serving.routes import Route

pytestmark = pytest.mark.unit

BAD_REFS = ["a@0", "a@007", "a@", "@3", "A@3", "a..b@3", "a@3x", "a@-1", "a b@3"]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_version_refs_are_refused_everywhere(ref: str) -> None:
    assert not is_version_ref(ref)
    with pytest.raises(InputError, match="name@N"):
        parse_version_ref(ref)
    with pytest.raises(ValueError):
        Route(stable=ref)
    if "@" in ref and ref.partition("@")[2].isdigit():
        with pytest.raises(InputError):
            parse_ref(ref)


def test_good_refs_parse_the_same_in_every_part() -> None:
    assert parse_version_ref("support-intents@12") == ("support-intents", 12)
    assert split_ref("support-intents@12") == ("support-intents", "12")
    assert split_ref("support-intents@stable") == ("support-intents", "stable")
    assert split_ref("support-intents") == ("support-intents", None)
    assert Route(stable="support-intents@12").stable == "support-intents@12"


def test_gc_scan_finds_only_valid_refs_in_text() -> None:
    doc = {"routes": {"a": {"stable": "a@3", "note": "was a@0, b@12 and c@007; see x.a@4"}}}
    assert versions_named_in(doc) == {"a@3", "b@12", "x.a@4"}
