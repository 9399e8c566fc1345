"""The Responses API (/v1/responses) through the gateway over the real vLLM engine (tiny model),
called with the official openai client's ``responses.create``, streamed and not: the same
route, variant headers, schema validation and metrics as chat."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread


@pytest.fixture(scope="module")
def setup(settings, engine, tiny_base, tmp_path_factory):
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    v1, v2 = (reg.push(make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp(f"resp{s}"),
                                         r=8, scale=40.0, seed=s), "resp", tiny_base).ref for s in (31, 32))
    folder = tmp_path_factory.mktemp("resp-routes")
    (folder / "schema.json").write_text(json.dumps({"type": "object", "required": ["intent"]}))
    RoutesFile.from_mapping({"routes": {
        "resp": {"stable": v1, "canary": {"version": v2, "weight": 50}, "schema": "schema.json",
                 "validator": "validate"},
        "resp-strict": {"stable": v1, "schema": "schema.json", "validator": "reject"},
    }}).save(folder / "routes.yaml")
    with GatewayThread(build_gateway(settings, TINY_BASE, [engine.root_url], folder / "routes.yaml")) as gw:
        yield gw, {"stable": v1, "canary": v2}


def counters(gw, route: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{gw.root_url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.labels.get("route") == route and s.name.endswith("_total"):
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def test_responses_create_streamed_and_not_with_variants_validation_and_metrics(setup) -> None:
    gw, versions = setup
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    before = counters(gw, "resp")
    raw = client.responses.with_raw_response.create(model="resp", input="Classify: my parcel is late.",
                                                    max_output_tokens=8, temperature=0, user="user-7")
    r = raw.parse()
    variant = raw.headers["x-lorafleet-variant"]
    assert raw.headers["x-lorafleet-route"] == "resp" and variant in versions
    assert raw.headers["x-lorafleet-version"] == versions[variant]
    assert isinstance(r.output_text, str) and r.usage.output_tokens >= 1

    with client.responses.with_streaming_response.create(
            model="resp", input=[{"role": "developer", "content": "Answer in JSON."},
                                 {"role": "user", "content": "Classify: my parcel is late."}],
            max_output_tokens=8, temperature=0, user="user-7", stream=True) as streamed:
        assert streamed.headers["x-lorafleet-variant"] == variant  # sticky: same user, same variant
        events = list(streamed.parse())
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.usage.output_tokens >= 1 and deltas == done[0].response.output_text

    after = counters(gw, "resp")
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    assert delta["lorafleet_requests_total"] == 2
    assert delta["lorafleet_completion_tokens_total"] == r.usage.output_tokens + done[0].response.usage.output_tokens
    assert delta["lorafleet_prompt_tokens_total"] == r.usage.input_tokens + done[0].response.usage.input_tokens
    assert delta["lorafleet_schema_checks_total"] == 2  # the random model's words are not the schema's JSON
    assert delta["lorafleet_schema_failures_total"] == 2


def test_responses_in_reject_mode_are_422_streamed_and_not(setup) -> None:
    gw, _ = setup
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.UnprocessableEntityError) as info:
            result = client.responses.create(model="resp-strict", input="hi", max_output_tokens=8, stream=stream)
            if stream:
                list(result)
        err = info.value.response.json()["error"]
        assert err["type"] == "invalid_response_error" and err["code"] in ("not_json", "truncated",
                                                                            "schema_violation")


def test_responses_bad_parameters_are_named(setup) -> None:
    gw, _ = setup
    client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="resp", input="hi", max_output_tokens=0)
    assert info.value.response.json()["error"]["param"] == "max_output_tokens"
