"""The registry on both backends: the local folder and a real S3 server (moto, loopback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lorafleet.core.errors import InputError
from lorafleet.registry import check_compatibility
from lorafleet.registry.errors import IncompatibleAdapter, IntegrityError, NotFound, RegistryError
from lorafleet.registry.storage import LocalStorage, S3Storage
from lorafleet.registry.store import Registry
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.registry_backends import moto_s3


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def reg(request, tmp_path) -> Registry:
    if request.param == "local":
        return Registry(LocalStorage(tmp_path / "registry"), tmp_path / "cache")
    endpoint = request.getfixturevalue("s3_endpoint")
    return Registry(S3Storage("lorafleet-test", f"t/{tmp_path.name}", endpoint), tmp_path / "cache")


@pytest.fixture(scope="module")
def adapter(settings, tiny_base, tmp_path_factory) -> Path:
    return make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp("adapter"), r=4, seed=3)


def test_push_resolve_and_lineage(reg, adapter, tiny_base) -> None:
    m1 = reg.push(adapter, "intents", tiny_base, lineage={
        "seed": 7, "dataset_sha256": {"train": "ab"}, "eval_metrics": {"schema_pass_rate": 0.95},
        "fingerprint": {"rows": 3, "features": {"prompt_tokens": {"edges": [8, 16], "counts": [1, 2, 0]}}},
        "something_new": 1})
    m2 = reg.push(adapter, "intents", tiny_base, parent=1)
    assert (m1.ref, m2.ref) == ("intents@1", "intents@2")
    assert reg.resolve("intents").version == 2 and reg.resolve("intents@1").seed == 7
    got = reg.resolve("intents@1")
    assert got.base == tiny_base.identity and got.peft.r == 4 and got.peft.peft_type == "LORA"
    assert got.fingerprint.features["prompt_tokens"].counts == [1, 2, 0]
    assert got.extra == {"something_new": 1} and m2.parent == "intents@1"  # a bare number: same name
    assert set(got.files) >= {"adapter_config.json", "adapter_model.safetensors"}
    assert [m.ref for m in reg.list("intents")] == ["intents@1", "intents@2"] and reg.names() == ["intents"]
    reg.verify("intents@1")


def test_aliases_move_and_are_audited(reg, adapter, tiny_base) -> None:
    reg.push(adapter, "a", tiny_base)
    reg.push(adapter, "a", tiny_base)
    reg.set_alias("a", "stable", 1, actor="ann", reason="first")
    reg.set_alias("a", "stable", 2, actor="bob", reason="better")
    assert reg.resolve("a@stable").version == 2 and reg.aliases("a") == {"stable": 2}
    audit = reg.audit("a")
    assert [(e.actor, e.from_version, e.to_version, e.reason) for e in audit] == [
        ("ann", None, 1, "first"), ("bob", 1, 2, "better")]
    with pytest.raises(NotFound, match="aliases: stable"):
        reg.resolve("a@champion")
    with pytest.raises(NotFound):
        reg.set_alias("a", "canary", 9, actor="x")


def _count(reg: Registry) -> int:
    return len(reg.storage.list("adapters/"))


def test_bad_adapter_folders_write_nothing(reg, adapter, tiny_base, tmp_path) -> None:
    no_cfg = tmp_path / "no-cfg"
    shutil.copytree(adapter, no_cfg)
    (no_cfg / "adapter_config.json").unlink()
    no_weights = tmp_path / "no-weights"
    shutil.copytree(adapter, no_weights)
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(IncompatibleAdapter, match="adapter_config.json"):
        reg.push(no_cfg, "x", tiny_base)
    with pytest.raises(IncompatibleAdapter, match="no adapter weights"):
        reg.push(no_weights, "x", tiny_base)
    for bad in ("../x", "has space", ""):
        with pytest.raises(InputError, match="not a safe name"):
            reg.push(adapter, bad, tiny_base)
    assert _count(reg) == 0


def test_a_mismatched_base_is_refused(reg, adapter, tiny_base) -> None:
    other = tiny_base.model_copy(deep=True)
    other.linear_modules = {k: [v[0] * 2, v[1] * 2] for k, v in other.linear_modules.items()}
    with pytest.raises(IncompatibleAdapter, match=r"shape \[4, 64\].*needs \[4, 128\]"):
        reg.push(adapter, "x", other)
    no_q = tiny_base.model_copy(deep=True)
    no_q.linear_modules.pop("q_proj")
    with pytest.raises(IncompatibleAdapter, match="target module 'q_proj' does not exist"):
        reg.push(adapter, "x", no_q)
    with pytest.raises(IncompatibleAdapter, match="above the engine's max LoRA rank 2"):
        reg.push(adapter, "x", tiny_base, max_lora_rank=2)
    assert _count(reg) == 0


def test_manifest_check_compares_base_identity(reg, adapter, tiny_base) -> None:
    m = reg.push(adapter, "x", tiny_base)
    check_compatibility(m, tiny_base)
    other = tiny_base.model_copy(deep=True)
    other.identity.weights_sha256 = "0" * 64
    with pytest.raises(IncompatibleAdapter, match="was trained on base"):
        check_compatibility(m, other)


def _flip_byte(reg: Registry, ref: str, rel: str) -> None:
    m = reg.resolve(ref)
    key = f"adapters/{m.name}/blobs/{m.blob}/{rel}"
    data = bytearray(reg.storage.get(key))
    data[len(data) // 2] ^= 0x01
    reg.storage.put(key, bytes(data))


def test_a_flipped_byte_fails_verify_pull_and_materialize(reg, adapter, tiny_base, tmp_path) -> None:
    reg.push(adapter, "x", tiny_base)
    _flip_byte(reg, "x@1", "adapter_model.safetensors")
    with pytest.raises(IntegrityError, match="adapter_model.safetensors"):
        reg.verify("x@1")
    with pytest.raises(IntegrityError, match="adapter_model.safetensors"):
        reg.pull("x@1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(IntegrityError, match="adapter_model.safetensors"):
        reg.materialize("x@1")


def test_pull_and_materialize_give_verified_folders(reg, adapter, tiny_base, tmp_path) -> None:
    reg.push(adapter, "x", tiny_base)
    out = reg.pull("x", tmp_path / "copy")
    assert (out / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    folder = reg.materialize("x@1")
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    with pytest.raises(RegistryError, match="already exists"):
        reg.pull("x", tmp_path / "copy")


def test_gc_keeps_aliased_routed_and_newest(reg, adapter, tiny_base) -> None:
    for _ in range(5):
        reg.push(adapter, "g", tiny_base)
    reg.set_alias("g", "stable", 2, actor="t")
    removed = reg.gc({"g@3"})
    assert sorted(removed) == ["g@1", "g@4"]
    assert reg.versions("g") == [2, 3, 5]
    reg.verify("g@2")
    with pytest.raises(NotFound):
        reg.resolve("g@1")
    assert reg.push(adapter, "g", tiny_base).version == 6  # numbers are never reused


def test_unsafe_refs_are_refused(reg) -> None:
    for bad in ("../etc@1", "a@", "@1"):
        with pytest.raises(InputError):
            reg.resolve(bad)


def test_create_is_exclusive_on_the_backend(reg) -> None:
    """The one primitive version allocation relies on: create-if-absent (link / If-None-Match)."""
    assert reg.storage.create("probe/k", b"first") is True
    assert reg.storage.create("probe/k", b"second") is False
    assert reg.storage.get("probe/k") == b"first"


def test_gc_never_hands_a_removed_number_out_again(reg, adapter, tiny_base) -> None:
    for _ in range(3):
        reg.push(adapter, "n", tiny_base)
    assert reg.gc(set()) == ["n@1", "n@2"]
    with pytest.raises(NotFound, match="removed by gc"):
        reg.resolve("n@1")
    assert reg.versions("n") == [3] and reg.removed("n") == [1, 2]
    # a stale pusher that still thinks 2 is free cannot publish there
    assert reg.storage.create("adapters/n/versions/00000002.json", b"{}") is False
    with pytest.raises(NotFound):
        reg.set_alias("n", "stable", 1, actor="t", reason="gone")
    blobs = {k.split("/")[3] for k in reg.storage.list("adapters/n/blobs/")}
    assert blobs == {reg.resolve("n@3").blob}  # the removed versions' files are gone
    reg.verify("n@3")


def test_gc_removes_files_of_crashed_pushes_only_after_the_grace(reg, adapter, tiny_base) -> None:
    m = reg.push(adapter, "o", tiny_base)
    reg.storage.put("adapters/o/blobs/deadbeef/adapter_model.safetensors", b"half")
    reg.storage.put("adapters/crashed/blobs/cafe/adapter_config.json", b"{}")  # a first push that died
    assert reg.gc(set()) == []  # within the grace period: could be a push in progress
    removed = reg.gc(set(), orphan_grace_s=0)
    assert sorted(removed) == ["crashed blob cafe (unpublished push)", "o blob deadbeef (unpublished push)"]
    assert {k.split("/")[3] for k in reg.storage.list("adapters/o/blobs/")} == {m.blob}
    assert reg.storage.list("adapters/crashed/") == []
    reg.verify("o@1")


def test_alias_delete_and_bad_alias_names(reg, adapter, tiny_base) -> None:
    reg.push(adapter, "d", tiny_base)
    reg.set_alias("d", "canary", 1, actor="ann", reason="try")
    reg.set_alias("d", "canary", None, actor="ann", reason="rolled back")
    assert reg.aliases("d") == {}
    assert [(e.from_version, e.to_version) for e in reg.audit("d")] == [(None, 1), (1, None)]
    with pytest.raises(RegistryError, match="cannot be a number"):
        reg.set_alias("d", "7", 1, actor="x", reason="")
    with pytest.raises(InputError, match="not a safe name"):
        reg.set_alias("d", "../evil", 1, actor="x", reason="")
    assert reg.aliases("d") == {}


def test_library_versions_and_prompt_template_are_recorded(reg, adapter, tiny_base) -> None:
    from importlib.metadata import version

    m = reg.push(adapter, "l", tiny_base, lineage={"library_versions": {"trl": "9.9"},
                                                   "prompt_template_version": "v3"})
    got = reg.resolve("l@1")
    assert got.library_versions["peft"] == version("peft") and got.library_versions["torch"] == version("torch")
    assert got.library_versions["trl"] == "9.9"  # what training passes wins
    assert got.prompt_template_version == "v3" and m.created_by


def test_materialize_on_s3_caches_and_replaces_a_corrupted_cache(reg, adapter, tiny_base) -> None:
    reg.push(adapter, "c", tiny_base)
    first = reg.materialize("c@1")
    assert first == reg.materialize("c")  # same folder the second time
    if reg.storage.local_path("x") is None:  # S3: the cache copy, not the store, is what we damage
        target = first / "adapter_model.safetensors"
        data = bytearray(target.read_bytes())
        data[100] ^= 0xFF
        target.write_bytes(bytes(data))
        again = reg.materialize("c@1")
        assert (again / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    else:
        assert first.is_relative_to(reg.storage.root)  # local: the stored folder itself


def test_s3_failures_are_one_line_registry_errors_naming_the_object(s3_endpoint, adapter, tiny_base,
                                                                    tmp_path) -> None:
    """A bucket that does not exist: push, list and read fail as RegistryError (the CLI's one line,
    exit 2) naming the object and S3's error code, not as a botocore traceback."""
    reg = Registry(S3Storage("no-such-bucket", "team", s3_endpoint), tmp_path / "cache")
    with pytest.raises(RegistryError, match=r"cannot write s3://no-such-bucket/team/.*NoSuchBucket"):
        reg.push(adapter, "intents", tiny_base)
    with pytest.raises(RegistryError, match=r"cannot list s3://no-such-bucket/team/.*NoSuchBucket"):
        reg.list("intents")
    with pytest.raises(RegistryError, match=r"cannot read s3://no-such-bucket/team/.*NoSuchBucket"):
        S3Storage("no-such-bucket", "team", s3_endpoint).get("intents/aliases.json")
