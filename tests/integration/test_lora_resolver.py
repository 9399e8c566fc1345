"""An engine on "another machine" loads name@N straight from an S3 registry through lorafleet's
vLLM LoRA resolver plugin: fetched into its own cache, every file's sha256 verified, checked
against its base; a corrupted object and an unknown version are refused.

Three homes, no shared path: the pusher's, the engine's and the test's own; the registry is a
real S3 server (moto) on loopback; the engine is a real vLLM process with the plugin switched
on by its environment. Nobody calls /v1/load_lora_adapter.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import boto3
import httpx
import openai
import pytest
from openai import OpenAI

from lorafleet.core.settings import Settings
from lorafleet.engine.vllm import EngineConfig, LocalEngine
from lorafleet.platform.base_pull import pull_base
from lorafleet.registry.errors import IncompatibleAdapter
from lorafleet.registry.storage import S3Storage
from lorafleet.registry.store import Registry
from lorafleet.serving.lora_resolver import ENABLE_ENV, PLUGIN_NAME, RegistryFetcher
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.registry_backends import S3_ENV, moto_s3
from tests.tiny import build_tiny_llama

pytestmark = [pytest.mark.slow]
BUCKET, PREFIX = "lorafleet-test", "fleet"


def _registry_env(home: Path, endpoint: str) -> dict[str, str]:
    return {**S3_ENV, "LORAFLEET_HOME": str(home), "LORAFLEET_REGISTRY_URL": f"s3://{BUCKET}/{PREFIX}",
            "LORAFLEET_S3_ENDPOINT_URL": endpoint}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tiny_model_dir):
    """(engine, pushed refs, the engine's home) with versions pushed from another home."""
    with moto_s3(BUCKET) as endpoint:
        pusher_home, engine_home = tmp_path_factory.mktemp("pusher-home"), tmp_path_factory.mktemp("engine-home")
        pusher = Settings(home=pusher_home, registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=endpoint)
        base, _ = pull_base(pusher, TINY_BASE, tiny_model_dir)
        registry = Registry(S3Storage(BUCKET, PREFIX, endpoint), pusher_home / "cache")
        src = tmp_path_factory.mktemp("adapters")
        good = registry.push(make_lora_adapter(pusher.layout.base(TINY_BASE), src / "a", r=8, seed=1), "fleet-a", base)
        bad = registry.push(make_lora_adapter(pusher.layout.base(TINY_BASE), src / "b", r=8, seed=2), "fleet-a", base)
        key = f"{PREFIX}/adapters/fleet-a/blobs/{bad.blob}/adapter_model.safetensors"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0xFF  # one flipped byte in the stored weights
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))

        # the engine's machine has its own copy of the base (pulled there), nothing of the pusher's
        engine_settings = Settings(home=engine_home)
        pull_base(engine_settings, TINY_BASE, shutil.copytree(tiny_model_dir, engine_home / "src-base"))
        env = {**_registry_env(engine_home, endpoint), ENABLE_ENV: "1", "VLLM_PLUGINS": PLUGIN_NAME}
        config = EngineConfig.from_settings(engine_settings, engine_settings.layout.base(TINY_BASE), TINY_BASE,
                                            log_path=engine_home / "vllm.log", max_lora_rank=16, extra_env=env)
        engine = LocalEngine(config).start()
        try:
            yield engine, good.ref, bad.ref, engine_home
        finally:
            engine.stop()


def test_engine_loads_a_version_from_s3_into_its_own_cache(fleet) -> None:
    engine, good, _bad, home = fleet
    client = OpenAI(base_url=engine.url, api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=good, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert r.model == good and r.choices[0].message.content is not None
    served = {m.id: m for m in client.models.list().data}
    assert good in served
    cached = home / "cache" / "registry" / "fleet-a" / good.split("@")[1]
    assert (cached / "adapter_model.safetensors").is_file() and (cached / "adapter_config.json").is_file()


def test_a_flipped_byte_in_s3_is_refused_naming_the_file(fleet) -> None:
    engine, _good, bad, _home = fleet
    r = httpx.post(f"{engine.url}/chat/completions", timeout=60,
                   json={"model": bad, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code >= 400, r.text
    log = engine.log_tail(20000)
    assert "adapter_model.safetensors" in (r.text + log) and "sha256" in (r.text + log).lower(), r.text
    models = httpx.get(f"{engine.url}/models", timeout=10).json()["data"]
    assert bad not in {m["id"] for m in models}


@pytest.mark.parametrize("name", ["fleet-a@9", "not-a-version", "fleet-b@1"])
def test_unknown_or_malformed_names_are_404(fleet, name: str) -> None:
    engine, *_ = fleet
    client = OpenAI(base_url=engine.url, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_fetcher_refuses_an_adapter_of_another_base(tmp_path, tiny_model_dir) -> None:
    """The compatibility check runs on the engine side too (no vLLM needed for this one)."""
    with moto_s3(BUCKET) as endpoint:
        home = tmp_path / "home"
        s = Settings(home=home, registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=endpoint)
        other_src = build_tiny_llama(tmp_path / "other", seed=7)
        other, _ = pull_base(s, "other-llama", other_src)
        mine, _ = pull_base(s, TINY_BASE, tiny_model_dir)
        registry = Registry(S3Storage(BUCKET, PREFIX, endpoint), home / "cache")
        ref = registry.push(make_lora_adapter(s.layout.base("other-llama"), tmp_path / "a", r=8, seed=1),
                            "other-a", other).ref
        old = {k: os.environ.get(k) for k in _registry_env(home, endpoint)}
        os.environ.update(_registry_env(home, endpoint))
        try:
            fetcher = RegistryFetcher(s.layout.base(TINY_BASE))
            with pytest.raises(IncompatibleAdapter, match="other-llama"):
                fetcher.fetch(ref)
            assert fetcher.fetch("other-a@5") is None and fetcher.fetch("other-a") is None
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert mine.name == TINY_BASE
