"""The platform loop on the tiny model: train -> push -> serve -> promote canary -> traffic ->
full promote -> rollback with zero failed requests; and a deliberately bad version (trained
on corrupted targets, pushed with --force) rolled back by the automatic canary analysis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from openai import OpenAI

from lorafleet.core.errors import InputError
from lorafleet.platform.control.analysis import AnalysisLoop
from lorafleet.platform.errors import PlatformError
from lorafleet.platform.control.gates import golden_gate
from lorafleet.platform.control.promotion import Promoter, parse_percent
from lorafleet.platform.control.routes_edit import history
from lorafleet.registry.errors import NotFound
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE
from tests.integration.gateway_harness import ClientThreads, GatewayThread

GOOD = '{"intent":"other"}'
BAD = "sorry, I cannot do JSON today"
SCHEMA = {"type": "object", "required": ["intent"], "properties": {"intent": {"type": "string"}}}


WORDS = ("parcel refund invoice delay broken screen password account address courier voucher warranty "
         "battery charger upgrade plan cancel billing receipt coupon size colour exchange label tracking").split()


def _sentence(rng, n_words: int = 7) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + f" {rng.randrange(10**6)}"


def _dataset(folder: Path, target: str, n: int = 48) -> Path:
    """Distinct random requests, all answered with ``target``; golden rows never seen in train."""
    import random

    rng = random.Random(target)
    folder.mkdir(parents=True, exist_ok=True)

    def rows(k: int) -> str:
        return "".join(json.dumps({"messages": [
            {"role": "system", "content": "Classify the request as JSON."},
            {"role": "user", "content": _sentence(rng)},
            {"role": "assistant", "content": target}]}) + "\n" for _ in range(k))

    path = folder / "train.jsonl"
    path.write_text(rows(n))
    (folder / "golden.jsonl").write_text(rows(6))
    return path


@pytest.fixture(scope="module")
def trained(settings, tiny_base, tmp_path_factory) -> dict[str, str]:
    """Two adapters trained for real on Ray: one answers valid JSON, one (corrupted targets) does not."""
    from lorafleet.training.config import load_train_config
    from lorafleet.training.job import ensure_ray
    from lorafleet.training.pipeline import run_pipeline

    ensure_ray(num_cpus=2)
    example = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"
    refs = {}
    try:
        # the good one has no training-time thresholds (evaluation is skipped here); the bad one keeps
        # the example's, fails them and is pushed with --force, which its manifest records
        no_gate = ["gate.min_json_parse_rate=null", "gate.min_schema_pass_rate=null", "gate.min_field_match={}",
                   "gate.suites={}"]
        for name, target, extra in (("loop-good", GOOD, [*no_gate, "max_steps=90"]),
                                    ("loop-bad", BAD, ["max_steps=20"])):
            train = _dataset(tmp_path_factory.mktemp(name), target)
            cfg = load_train_config(example, [
                "base=tiny-llama", f"output_name={name}", f"data.train={train}", "data.eval=null",
                f"data.golden={train.parent / 'golden.jsonl'}", "learning_rate=0.006", "peft.r=64", "peft.alpha=64",
                "peft.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
                "batch_size=8", "cpus_per_worker=1", "logging_steps=10", "checkpoint_every_steps=40",
                "warmup_ratio=0", "checks.label_field=null", "bf16_autocast=false", *extra])
            result = run_pipeline(cfg, settings, force=True, evaluate=False, show_progress=False, say=lambda _m: None)
            refs[name] = result.ref
    finally:
        import ray

        ray.shutdown()
    return refs


@pytest.fixture(scope="module")
def loop(settings, engine, trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop")
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    routes = settings.layout.routes_file
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], routes)
    with GatewayThread(gateway) as gw:
        yield gw, folder


class Traffic(ClientThreads):
    """Clients sending requests in the background; every failure is kept."""

    def __init__(self, url: str, model: str, clients: int = 8, **params) -> None:
        super().__init__(clients)
        self.url, self.model, self.params = url, model, params
        self.seen: list[str] = []
        self.errors: list[str] = []

    def _run(self, i: int) -> None:
        client = OpenAI(base_url=self.url, api_key="unused", max_retries=0)
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=self.model, max_tokens=12, temperature=0, user=f"c{i}-{n}", **self.params,
                    messages=[{"role": "user", "content": f"request number {n}: please help with item {i}"}])
                self.seen.append(raw.headers["x-lorafleet-version"])
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.errors.append(f"{type(exc).__name__}: {exc}")


def _wait_applied(gw, route: str, predicate, timeout_s: float = 3.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = httpx.get(f"{gw.root_url}/admin/routes").json()["routes"].get(route)
        if current is not None and predicate(current):
            return
        time.sleep(0.05)
    raise AssertionError("routes change not applied")


def test_train_promote_full_rollback_with_zero_failures(settings, loop, trained) -> None:
    gw, _ = loop
    good = trained["loop-good"]
    promoter = Promoter(settings, TINY_BASE, actor="test",
                        gate=golden_gate(settings, gateway_url=gw.root_url))
    with Traffic(gw.url, TINY_BASE) as base_traffic:  # some traffic on the base meanwhile
        change = promoter.canary(good, 50.0, route="loop", reason="first rollout")
        assert "+    stable: tiny-llama" in change.diff and "version: loop-good@1" in change.diff
        _wait_applied(gw, "loop", lambda r: r.get("canary"))
        with Traffic(gw.url, "loop") as t1:
            time.sleep(3)
            promoter.full("loop", "looks good")
            _wait_applied(gw, "loop", lambda r: r["stable"] == good and not r.get("canary"))
            time.sleep(2)
            promoter.rollback("loop", "practice a rollback")
            _wait_applied(gw, "loop", lambda r: r["stable"] == TINY_BASE)
            time.sleep(2)
    assert t1.errors == [] and base_traffic.errors == [], (t1.errors[:3], base_traffic.errors[:3])
    assert {good, "base"} <= set(t1.seen)
    kinds = [e["kind"] for e in history(settings.layout.routes_file, "loop")]
    assert kinds[-3:] == ["canary", "full", "rollback"]
    audit = [(e.alias, e.to_version, e.reason) for e in __import__("lorafleet.registry", fromlist=["x"])
             .open_registry(settings).audit("loop-good")]
    assert ("stable", 1, "looks good") in audit and ("canary", None, "looks good") in audit
    with pytest.raises(PlatformError, match="nothing to roll back"):
        promoter.rollback("loop")


def test_promote_refuses_bad_input_and_leaves_routes_unchanged(settings, loop, trained, tiny_base, tmp_path) -> None:
    promoter = Promoter(settings, TINY_BASE, actor="test", gate=golden_gate(settings))
    routes = settings.layout.routes_file

    def snapshot() -> bytes | None:  # the file may not exist yet when this test runs alone
        return routes.read_bytes() if routes.exists() else None

    before = snapshot()
    with pytest.raises(NotFound):
        promoter.canary("loop-good@99", 5)
    with pytest.raises(InputError, match="between 0 and 100"):
        parse_percent("150%")
    with pytest.raises(PlatformError, match="failed its evaluation gate"):  # pushed with --force
        Promoter(settings, TINY_BASE, gate=golden_gate(settings)).canary(trained["loop-bad"], 5, route="loop")
    other = Promoter(settings, "smollm2-135m-instruct", actor="test")
    with pytest.raises(Exception, match="trained on base|not found"):
        other.canary(trained["loop-good"], 5, route="loop")
    with pytest.raises(PlatformError, match="no canary"):
        promoter.full("loop")
    assert snapshot() == before


def test_bad_canary_is_rolled_back_by_the_analysis(settings, loop, trained) -> None:
    gw, folder = loop
    good, bad = trained["loop-good"], trained["loop-bad"]
    schema_path = folder / "schema.json"
    routes = RoutesFile.from_mapping({"routes": {"judged": {
        "stable": good, "schema": str(schema_path), "validator": "validate",
        "canary": {"version": bad, "weight": 50},
        "analysis": {"interval_s": 4, "min_requests": 8, "max_schema_failure_increase": 0.2,
                     "max_p95_latency_ratio": 100, "steps": [50, 100]}}}})
    current = RoutesFile.load(settings.layout.routes_file)
    current.routes.update(routes.routes)
    current.save(settings.layout.routes_file)
    _wait_applied(gw, "judged", lambda r: r.get("canary"))
    said: list[str] = []
    # what `platform serve --canary-analysis` runs beside the gateway: a watcher per canary
    analysis = AnalysisLoop.for_home(settings, TINY_BASE, gw.root_url, poll_s=0.5, say=said.append)
    # one JSON object per answer: stop at its closing brace (the tiny model does not learn to stop)
    with Traffic(gw.url, "judged", stop=["}"], extra_body={"include_stop_str_in_output": True}) as t:
        analysis.start()
        deadline = time.monotonic() + 40
        while "judged" not in analysis.outcomes and time.monotonic() < deadline:
            time.sleep(0.2)
        _wait_applied(gw, "judged", lambda r: not r.get("canary"))
        time.sleep(1)
    analysis.stop()
    outcome = analysis.outcomes.get("judged", ["still watching"])[0]
    print("\n".join(said))
    assert outcome == "rolled back", said
    assert t.errors == [], t.errors[:3]
    last = history(settings.layout.routes_file, "judged")[-1]
    assert last["kind"] == "rollback" and "schema-failure rate" in last["reason"], last
    assert RoutesFile.load(settings.layout.routes_file).routes["judged"].stable == good
    from lorafleet.registry import open_registry

    assert any("schema-failure" in e.reason for e in open_registry(settings).audit("loop-bad"))
