"""Registering a base from a folder: manifest, hashes, idempotence, integrity."""

from __future__ import annotations

import json

import pytest

from lorafleet.core.fsutil import sha256_file
from lorafleet.platform.base_pull import pull_base
from lorafleet.registry.bases import BASE_MANIFEST, BaseStore
from lorafleet.registry.errors import IntegrityError


def test_manifest_hashes_match_the_files(settings, tiny_base) -> None:
    folder = settings.layout.base(tiny_base.name)
    on_disk = json.loads((folder / BASE_MANIFEST).read_text())
    assert set(on_disk["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    for rel, entry in on_disk["files"].items():
        assert sha256_file(folder / rel) == entry["sha256"], rel
        assert (folder / rel).stat().st_size == entry["size_bytes"], rel
    assert tiny_base.architecture == "LlamaForCausalLM"
    assert tiny_base.num_hidden_layers == 2
    assert tiny_base.linear_modules["q_proj"] == [64, 64]
    assert tiny_base.identity.chat_template_sha256 is not None
    assert tiny_base.smoke_output


def test_pull_is_idempotent(settings, tiny_base, tiny_model_dir) -> None:
    again, created = pull_base(settings, tiny_base.name, tiny_model_dir)
    assert created is False
    assert again.identity == tiny_base.identity
    assert BaseStore(settings.layout.bases).verify(tiny_base.name).identity == tiny_base.identity


def test_verify_names_a_changed_file(settings, tiny_model_dir) -> None:
    manifest, created = pull_base(settings, "tiny-corrupt", tiny_model_dir)
    assert created
    store = BaseStore(settings.layout.bases)
    cfg = store.path("tiny-corrupt") / "config.json"
    data = bytearray(cfg.read_bytes())
    data[5] ^= 0x01
    cfg.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="config.json"):
        store.verify("tiny-corrupt")


def test_unknown_base_lists_the_available_ones(settings, tiny_base) -> None:
    from lorafleet.registry.errors import NotFound

    with pytest.raises(NotFound, match=tiny_base.name):
        BaseStore(settings.layout.bases).require("nope")
