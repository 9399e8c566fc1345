"""A fleet where nothing shares a disk: two gateways, two vLLM engines and one S3 server (moto),
every process with its own LORAFLEET_HOME, as separate machines would be.

- versions are pushed from a third home; `platform promote --canary 10%` runs from a fourth;
  both gateways apply it within 2 s; 2,000 requests from distinct users split within binomial
  bounds on both, the same user getting the same variant on either; rollback; 0 failed requests;
  each engine fetched the versions from S3 into its own cache (the gateways hold none);
- a flipped byte in an S3 object: the engines refuse that version naming the file, and the
  canary's share is answered by stable;
- two promotes of different routes at the same moment from two homes both land, both recorded;
- an engine killed (SIGKILL) under load: the other takes its traffic, no non-streamed request
  fails; an engine started later joins through the routes document's `engines` list, with no
  gateway restart.

Processes are started with the command lines and environment of ``lorafleet.platform.topology``
where it defines them (the manifests in deploy/ are rendered from the same definitions).
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import httpx
import pytest
from openai import OpenAI

from lorafleet.registry.storage import S3Storage
from lorafleet.registry.store import Registry
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.fleet_harness import BUCKET, PLATFORM, PREFIX, Fleet
from tests.metrics_text import scrape, total
from tests.registry_backends import moto_s3

pytestmark = [pytest.mark.slow]

@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tiny_model_dir):
    with moto_s3(BUCKET) as endpoint:
        f = Fleet(tmp_path_factory.mktemp("fleet"), endpoint, tiny_model_dir)
        for name in ("pusher", "promoter-1", "promoter-2", "engine-0", "engine-1", "gateway-0", "gateway-1"):
            f.pull_base(name)
        pusher = f.settings("pusher")
        base_dir = pusher.layout.base(TINY_BASE)
        registry = Registry(S3Storage(BUCKET, PREFIX, endpoint), pusher.layout.cache)
        from lorafleet.registry.bases import BaseStore

        manifest = BaseStore(pusher.layout.bases).get(TINY_BASE)
        src = f.home("pusher") / "adapters"
        refs = [registry.push(make_lora_adapter(base_dir, src / f"a{i}", r=8, seed=i), "fleet-a", manifest).ref
                for i in (1, 2, 3)]
        refs.append(registry.push(make_lora_adapter(base_dir, src / "b1", r=8, seed=9), "fleet-b", manifest).ref)
        bad = registry.resolve(refs[2])  # fleet-a@3: one flipped byte in its stored weights
        key = f"{PREFIX}/adapters/fleet-a/blobs/{bad.blob}/adapter_model.safetensors"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0xFF
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))

        routes = f.home("promoter-1") / "routes.yaml"
        routes.write_text(f"routes:\n  fleet-a: {{stable: {refs[0]}}}\n  fleet-b: {{stable: {TINY_BASE}}}\n")
        applied = f.platform("promoter-1", "routes", "apply", str(routes), "--reason", "first routes")
        assert applied.returncode == 0, applied.stderr

        engines = [f.start_engine("engine-0"), f.start_engine("engine-1")]
        try:
            for i, url in enumerate(engines):
                f.wait(f"{url}/health", f"engine-{i}")
            gateways = [f.start_gateway(f"gateway-{i}", engines) for i in (0, 1)]
            # an engine started after the gateways, which they do not know of until the routes
            # document lists it (started now, while the machine is idle, not under the test's load)
            f.pull_base("engine-late")
            f.late_engine = f.start_engine("engine-late")
            for i, url in enumerate(gateways):
                f.wait(f"{url}/readyz", f"gateway-{i}", timeout_s=60)
            f.wait(f"{f.late_engine}/health", "engine-late")
            f.engines, f.gateways, f.refs = engines, gateways, refs
            AUTH.update(f.auth)
            yield f
        finally:
            f.stop_all()


AUTH: dict[str, str] = {}  # the fleet's admin key, set by the fixture (the gateways run with keys)


@functools.cache
def _client(gateway: str) -> OpenAI:
    """One client per gateway, shared by the test's threads (building one costs ~25 ms of CPU)."""
    return OpenAI(base_url=f"{gateway}/v1", api_key=AUTH["Authorization"].removeprefix("Bearer "), max_retries=0,
                  timeout=120)


def _ask(gateway: str, user: str, model: str = "fleet-a") -> str:
    """One non-streamed request; the variant that answered it."""
    r = _client(gateway).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1, user=user)
    r.parse()
    return r.headers["x-lorafleet-variant"] + ":" + r.headers["x-lorafleet-version"]


def _canary(gateway: str, route: str = "fleet-a") -> tuple[str | None, float]:
    models = {m["id"]: m for m in httpx.get(f"{gateway}/v1/models", headers=AUTH, timeout=10).json()["data"]}
    versions = models[route]["versions"]
    return versions["canary"], versions["canary_weight"]


def _wait_for(predicate, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


class Load:
    """Non-streamed requests from many users through both gateways until stopped; failures kept."""

    def __init__(self, gateways: list[str], threads: int = 4) -> None:
        self.gateways, self.failures, self.done = gateways, [], 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            gateway = self.gateways[(i + n) % len(self.gateways)]
            try:
                _ask(gateway, f"load-{i}-{n}")
                self.done += 1
            except Exception as err:  # noqa: BLE001 - every failure is recorded and asserted on
                self.failures.append(repr(err))
            n += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)


def test_canary_split_on_both_gateways_then_rollback(fleet) -> None:
    stable, canary = fleet.refs[0], fleet.refs[1]
    with Load(fleet.gateways) as load:
        promoted = fleet.platform("promoter-2", "promote", canary, "--canary", "10%")
        assert promoted.returncode == 0, promoted.stderr
        took = [_wait_for(lambda g=g: _canary(g) == (canary, 10.0), 2.0) for g in fleet.gateways]
        print(f"canary applied on both gateways after {max(took):.2f} s")

        def ask(i: int) -> tuple[int, str]:
            return i % 2, _ask(fleet.gateways[i % 2], f"user-{i}")

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(1000)))
        for g in (0, 1):
            variants = [v for gw, v in answers if gw == g]
            n, k = len(variants), sum(v == f"canary:{canary}" for v in variants)
            assert {v.split(":")[0] for v in variants} <= {"stable", "canary"}
            # within 4.25 points of 10%: the band 4.5 sd gave at 1,000 users a gateway (each user's
            # variant is a hash of the user, so 500 users a gateway are held to the same band)
            assert abs(k / n - 0.10) <= 0.0425, f"gateway {g}: {k} of {n} on the canary"
        # the split is the same on every gateway: a user's variant does not depend on the gateway
        same = [_ask(fleet.gateways[0], f"user-{i}") == _ask(fleet.gateways[1], f"user-{i}") for i in range(40)]
        assert all(same)

        rolled = fleet.platform("promoter-1", "rollback", "fleet-a")
        assert rolled.returncode == 0, rolled.stderr
        for g in fleet.gateways:
            _wait_for(lambda g=g: _canary(g) == (None, 0.0), 2.0)
        assert {_ask(fleet.gateways[i % 2], f"after-{i}") for i in range(20)} == {f"stable:{stable}"}
    assert load.failures == [] and load.done > 0
    for i in (0, 1):  # the engines fetched from S3 into their own caches; the gateways hold no adapter
        cached = fleet.home(f"engine-{i}") / "cache" / "registry" / "fleet-a"
        assert (cached / "1" / "adapter_model.safetensors").is_file(), f"engine-{i} never fetched {stable}"
    assert (fleet.home("engine-0") / "cache" / "registry" / "fleet-a" / "2").is_dir() or \
        (fleet.home("engine-1") / "cache" / "registry" / "fleet-a" / "2").is_dir()
    for i in (0, 1):
        assert not (fleet.home(f"gateway-{i}") / "cache" / "registry").exists()


def test_a_flipped_byte_in_s3_falls_back_to_stable_naming_the_file(fleet, tmp_path) -> None:
    stable, bad = fleet.refs[0], fleet.refs[2]
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"routes:\n  fleet-a:\n    stable: {stable}\n    canary: {{version: {bad}, weight: 50}}\n"
                      f"  fleet-b: {{stable: {TINY_BASE}}}\n")
    applied = fleet.platform("promoter-1", "routes", "apply", str(routes), "--reason", "a corrupted canary")
    assert applied.returncode == 0, applied.stderr
    for g in fleet.gateways:
        _wait_for(lambda g=g: _canary(g) == (bad, 50.0), 2.0)
    answers = [_ask(fleet.gateways[i % 2], f"corrupt-{i}") for i in range(60)]
    assert set(answers) == {f"stable:{stable}"}, set(answers)
    fallbacks = sum(total(scrape(g), "lorafleet_canary_fallbacks_total", route="fleet-a", version=bad)
                    for g in fleet.gateways)
    assert fallbacks > 0
    logs = "".join(fleet.log(n) for n in ("gateway-0", "gateway-1", "engine-0", "engine-1"))
    assert "adapter_model.safetensors" in logs and "sha256" in logs.lower()
    rolled = fleet.platform("promoter-2", "rollback", "fleet-a")
    assert rolled.returncode == 0, rolled.stderr


def test_two_promotes_of_different_routes_at_once_both_land(fleet) -> None:
    procs = [subprocess.Popen([PLATFORM, "promote", ref, "--canary", pct], env=fleet.env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for home, ref, pct in (("promoter-1", fleet.refs[3], "20%"), ("promoter-2", fleet.refs[1], "30%"))]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    shown = fleet.platform("promoter-1", "routes", "show")
    assert fleet.refs[3] in shown.stdout and fleet.refs[1] in shown.stdout
    for g in fleet.gateways:
        _wait_for(lambda g=g: _canary(g, "fleet-b") == (fleet.refs[3], 20.0)
                  and _canary(g, "fleet-a") == (fleet.refs[1], 30.0), 2.0)
    history = fleet.platform("promoter-2", "routes", "history").stdout
    assert "fleet-b  canary" in history and "canary=" + fleet.refs[1] in history
    for route in ("fleet-a", "fleet-b"):
        assert fleet.platform("promoter-1", "rollback", route).returncode == 0


def test_an_engine_killed_under_load_and_one_that_joins_later(fleet, tmp_path) -> None:
    with Load(fleet.gateways, threads=4) as load:
        time.sleep(3)
        fleet.kill("engine-0")
        time.sleep(5)
        assert load.done > 0
        joined = fleet.late_engine  # started after the gateways; they have not heard of it
        assert all(joined not in {e["url"] for e in httpx.get(f"{g}/admin/engines", headers=AUTH, timeout=5)
                                  .json()["engines"]} for g in fleet.gateways)
        routes = tmp_path / "routes.yaml"
        routes.write_text(f"engines: [{joined}, {fleet.engines[1]}]\n"
                          f"routes:\n  fleet-a: {{stable: {fleet.refs[0]}}}\n  fleet-b: {{stable: {TINY_BASE}}}\n")
        assert fleet.platform("promoter-1", "routes", "apply", str(routes)).returncode == 0

        def served_by_new(g: str) -> bool:
            engines = httpx.get(f"{g}/admin/engines", headers=AUTH, timeout=5).json()["engines"]
            return any(e["url"] == joined and e["healthy"] for e in engines) and \
                [e["url"] for e in engines] == [joined, fleet.engines[1]]

        for g in fleet.gateways:
            _wait_for(lambda g=g: served_by_new(g), 10.0)
        time.sleep(3)
    assert load.failures == [], load.failures[:5]
    # fleet-a@1 stays where it is loaded (affinity: a load costs more than a short queue), so the new
    # engine gets the requests that need no adapter: the least-loaded engine with the fewest adapters
    for i in range(20):
        _ask(fleet.gateways[i % 2], f"base-{i}", model=TINY_BASE)
    counts = [total(scrape(g), "lorafleet_engine_requests_total", engine=joined) for g in fleet.gateways]
    assert sum(counts) > 0, "the engine that joined got no requests"
