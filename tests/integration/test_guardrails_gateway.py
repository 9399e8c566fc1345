"""Guardrails and observability through a real gateway over a real vLLM engine (tiny model)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from lorafleet.serving.tenants import KeysFile
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread
from tests.metrics_text import samples, total

MSG = [{"role": "user", "content": "Where is my order?"}]
SCHEMA = {"type": "object", "required": ["intent"], "additionalProperties": False,
          "properties": {"intent": {"enum": ["refund", "order_status", "other"]}}}


def poll(read, done, timeout_s: float = 10.0):
    """``read()`` until ``done`` holds for its value or ``timeout_s`` passes; the last value (asserted on by the caller)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (prometheus_client's parser)."""
    return total(text, name, **labels)


@pytest.fixture(scope="module")
def refs(settings, tiny_base, tmp_path_factory) -> dict[str, str]:
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    out = {}
    for i, name in enumerate(("guard-a", "guard-b", "guard-c")):
        src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp(name), r=4, seed=10 + i)
        out[name] = reg.push(src, name, tiny_base).ref
    return out


@pytest.fixture(scope="module")
def setup(settings, engine, refs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard-routes")
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    routes = {
        "enforced": {"stable": refs["guard-a"], "schema": "schema.json", "validator": "enforce",
                     "price": {"input_usd_per_million": 1.0, "output_usd_per_million": 2.0}},
        "checked": {"stable": refs["guard-b"], "schema": "schema.json", "validator": "validate"},
        "strict": {"stable": refs["guard-c"], "schema": "schema.json", "validator": "reject"},
        "open": {"stable": refs["guard-a"], "max_messages": 2, "pii": "reject"},
    }
    RoutesFile.from_mapping({"routes": routes}).save(folder / "routes.yaml")
    keys = KeysFile()
    key = {"acme": keys.add_key("acme", ["enforced", "checked"]), "globex": keys.add_key("globex", ["strict", "open"])}
    admin = keys.add_key("root")  # a tenant with every route but no admin rights
    key["root"] = admin
    from lorafleet.serving.tenants import hash_key, new_key

    key["admin"] = new_key()
    keys.admin_keys = [hash_key(key["admin"])]
    (folder / "keys.yaml").write_text(keys.to_yaml())
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], folder / "routes.yaml",
                            keys_file=folder / "keys.yaml", request_log=folder / "requests.jsonl")
    with GatewayThread(gateway) as gw:
        yield gw, key, folder


def client_for(gw, key: str) -> OpenAI:
    return OpenAI(base_url=gw.url, api_key=key, max_retries=0)


def test_tenant_isolation_matrix(setup) -> None:
    gw, key, _ = setup
    allowed = {"acme": {"enforced", "checked"}, "globex": {"strict", "open"},
               "root": {"enforced", "checked", "strict", "open", TINY_BASE},
               "admin": {"enforced", "checked", "strict", "open", TINY_BASE}}
    for who, k in key.items():
        client = client_for(gw, k)
        listed = {m.id for m in client.models.list().data}
        assert listed == allowed[who], (who, listed)
        for route in ("enforced", "checked", "strict", "open", TINY_BASE):
            body = {"model": route, "messages": MSG, "max_tokens": 8}
            r = httpx.post(f"{gw.url}/chat/completions", json=body, headers={"Authorization": f"Bearer {k}"},
                           timeout=60)
            if route in allowed[who]:
                assert r.status_code in (200, 422), (who, route, r.text)  # 422: strict's own verdict
            else:
                assert r.status_code == 404, (who, route, r.text)
                assert r.json()["error"]["code"] == "model_not_found"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key["acme"]}):
        r = httpx.post(f"{gw.url}/chat/completions", json={"model": "enforced", "messages": MSG}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{gw.root_url}/admin/routes", headers={"Authorization": f"Bearer {key['root']}"}).status_code == 403
    assert httpx.get(f"{gw.root_url}/admin/routes", headers={"Authorization": f"Bearer {key['admin']}"}).status_code == 200
    assert httpx.get(f"{gw.root_url}/admin/routes").status_code == 401


def test_enforce_returns_schema_valid_json(setup) -> None:
    gw, key, _ = setup
    client = client_for(gw, key["acme"])
    from jsonschema import validate

    for i in range(5):
        r = client.chat.completions.create(model="enforced", messages=[{"role": "user", "content": f"q{i}"}],
                                           max_tokens=30)
        validate(json.loads(r.choices[0].message.content), SCHEMA)


def test_reject_turns_invalid_output_into_422_and_validate_counts_it(setup) -> None:
    gw, key, _ = setup
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client_for(gw, key["globex"]).chat.completions.create(model="strict", messages=MSG, max_tokens=12)
    err = info.value.body
    assert info.value.status_code == 422 and err["code"] in ("not_json", "truncated", "schema_violation")
    with pytest.raises(openai.UnprocessableEntityError):  # streams are held and checked too
        list(client_for(gw, key["globex"]).chat.completions.create(model="strict", messages=MSG, max_tokens=12,
                                                                   stream=True))
    before = metric(httpx.get(f"{gw.root_url}/metrics").text, "lorafleet_schema_failures_total", route="checked")
    r = client_for(gw, key["acme"]).chat.completions.create(model="checked", messages=MSG, max_tokens=12)
    assert r.choices[0].message.content  # returned anyway
    text = httpx.get(f"{gw.root_url}/metrics").text
    assert metric(text, "lorafleet_schema_failures_total", route="checked") == before + 1


def test_input_checks(setup) -> None:
    gw, key, _ = setup
    client = client_for(gw, key["globex"])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="open", messages=MSG * 3, max_tokens=4)
    assert info.value.body["code"] == "too_many_messages"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="open", max_tokens=4,
                                       messages=[{"role": "user", "content": "I am bob@example.com"}])
    assert info.value.body["code"] == "pii_detected"


def test_counters_equal_what_the_client_sent_and_saw(setup) -> None:
    gw, key, folder = setup
    text0 = httpx.get(f"{gw.root_url}/metrics").text
    labels = {"route": "enforced", "tenant": "acme"}
    req0 = metric(text0, "lorafleet_requests_total", status="200", **labels)
    comp0 = metric(text0, "lorafleet_completion_tokens_total", **labels)
    prompt0 = metric(text0, "lorafleet_prompt_tokens_total", **labels)
    cost0 = metric(text0, "lorafleet_cost_usd_total", **labels)
    client = client_for(gw, key["acme"])
    prompt_seen = completion_seen = 0
    for i in range(7):
        r = client.chat.completions.create(model="enforced", messages=[{"role": "user", "content": f"n{i}"}],
                                           max_tokens=20)
        prompt_seen += r.usage.prompt_tokens
        completion_seen += r.usage.completion_tokens
    for i in range(3):
        stream = client.chat.completions.create(model="enforced", messages=[{"role": "user", "content": f"s{i}"}],
                                                max_tokens=20, stream=True, stream_options={"include_usage": True})
        usage = [c.usage for c in stream if c.usage][-1]
        prompt_seen += usage.prompt_tokens
        completion_seen += usage.completion_tokens
    # a stream's request is counted just after its last chunk is sent
    text = poll(lambda: httpx.get(f"{gw.root_url}/metrics").text,
                lambda t: metric(t, "lorafleet_requests_total", status="200", **labels) - req0 >= 10)
    assert metric(text, "lorafleet_requests_total", status="200", **labels) - req0 == 10
    assert metric(text, "lorafleet_completion_tokens_total", **labels) - comp0 == completion_seen
    assert metric(text, "lorafleet_prompt_tokens_total", **labels) - prompt0 == prompt_seen
    cost = metric(text, "lorafleet_cost_usd_total", **labels) - cost0
    assert cost == pytest.approx((prompt_seen * 1.0 + completion_seen * 2.0) / 1e6)
    assert metric(text, "lorafleet_time_to_first_token_seconds_count", route="enforced") >= 3
    assert metric(text, "lorafleet_route_info", route="enforced", variant="stable") == 100
    # the request log is written by a background writer: a moment later
    log = poll(lambda: [json.loads(line) for line in (folder / "requests.jsonl").read_text().splitlines()],
               lambda entries: any(e["route"] == "enforced" and e["tenant"] == "acme" for e in entries))
    assert any(e["route"] == "enforced" and e["tenant"] == "acme" and e["validator"] == "ok" for e in log)
    assert all("prompt" not in e for e in log)  # prompt text only when enabled
    assert key["acme"] not in (folder / "requests.jsonl").read_text()


def test_drift_gauge_rises_on_long_prompts_and_stays_low_in_distribution(settings, engine, tiny_base,
                                                                          tmp_path_factory) -> None:
    """One version, two routes: one gets prompts like its training data, the other far longer ones."""
    import random

    from lorafleet.registry import open_registry
    from lorafleet.registry.fingerprint import TOKEN_LENGTH_EDGES, histogram
    from lorafleet.serving.guardrails import TokenCounter

    rng = random.Random(0)
    words = "refund order parcel late broken account password invoice".split()
    short = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(200)]
    tokens = TokenCounter(settings.layout.base(TINY_BASE) / "tokenizer.json")
    # the training fingerprint as vLLM counts prompts: chat template included (measured below)
    client = OpenAI(base_url=engine.url, api_key="x", max_retries=0)
    overhead = client.chat.completions.create(model=TINY_BASE, max_tokens=1, messages=[
        {"role": "user", "content": ""}]).usage.prompt_tokens
    lengths = [overhead + tokens.count(t) for t in short]
    fingerprint = {"rows": len(short), "features": {
        "prompt_tokens": {"edges": TOKEN_LENGTH_EDGES, "counts": histogram(lengths, TOKEN_LENGTH_EDGES)},
        "completion_tokens": {"edges": TOKEN_LENGTH_EDGES, "counts": histogram([4] * len(short), TOKEN_LENGTH_EDGES)}}}
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp("drift"), r=4, seed=21)
    ref = open_registry(settings).push(src, "drifty", tiny_base, lineage={"fingerprint": fingerprint}).ref
    folder = tmp_path_factory.mktemp("drift-routes")
    RoutesFile.from_mapping({"routes": {"in-dist": {"stable": ref}, "shifted": {"stable": ref}}}).save(
        folder / "routes.yaml")
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], folder / "routes.yaml",
                            drift_window=60, drift_min_samples=30)
    with GatewayThread(gateway) as gw:
        c = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        for i in range(40):
            c.chat.completions.create(model="in-dist", max_tokens=4, messages=[{"role": "user", "content": short[i]}])
            long_prompt = " ".join(rng.choice(words) for _ in range(300))
            c.chat.completions.create(model="shifted", max_tokens=4, messages=[{"role": "user", "content": long_prompt}])
        text = httpx.get(f"{gw.root_url}/metrics").text
    low = metric(text, "lorafleet_drift_psi_ratio", route="in-dist", version=ref, feature="prompt_tokens")
    high = metric(text, "lorafleet_drift_psi_ratio", route="shifted", version=ref, feature="prompt_tokens")
    for route in ("in-dist", "shifted"):  # both gauges exist, so a low value is a measurement, not an absence
        assert len(samples(text, "lorafleet_drift_psi_ratio", feature="prompt_tokens", route=route, version=ref)) == 1
    assert low < 0.25, low
    assert high > 1.0, high
