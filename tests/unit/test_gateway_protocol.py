"""The request models (serving/protocol.py): one per endpoint, the single source for the
gateway's validation and for its published OpenAPI document."""

from __future__ import annotations

import json

import pytest

from lorafleet.serving.errors import BadRequest
from lorafleet.serving.protocol import ROLES, openapi_schemas, parse_request

BASE_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def parse(body, kind: str = "chat") -> dict:
    return parse_request(body if isinstance(body, bytes) else json.dumps(body).encode(), kind)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"top_logprobs": 99}, "top_logprobs"),
        ({"seed": "x"}, "seed"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "text": "x"}]}]},
         "messages[0].content[0].type"),
        ({"messages": [None]}, "messages[0]"),
        ({"messages": []}, "messages"),
        ({"model": 3}, "model"),
    ],
)
def test_bad_parameters_are_named(patch: dict, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse({**BASE_CHAT, **patch})
    assert info.value.param == param and info.value.status_code == 400
    assert param in info.value.message


def test_what_vllm_accepts_passes_and_the_body_is_forwarded_as_sent() -> None:
    body = {"model": "m", "n": 2, "seed": 7, "logprobs": True, "top_logprobs": 3, "temperature": 1,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "top_k": 5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "some_vllm_extra": {"kept": 1},
            "messages": [{"role": "developer", "content": "be brief"},
                         {"role": "system", "content": [{"type": "text", "text": "rules"}]},
                         {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
                         {"role": "tool", "content": "42", "tool_call_id": "c1"},
                         {"role": "function", "content": "42", "name": "lookup"}]}
    assert parse(body) == body  # a dict, unchanged: what vLLM gets
    assert {m["role"] for m in body["messages"]} == set(ROLES)
    assert parse({"model": "m", "prompt": [[1, 2], [3]]}, "completion")["prompt"] == [[1, 2], [3]]
    with pytest.raises(BadRequest, match="prompt"):
        parse({"model": "m"}, "completion")


def test_responses_requests() -> None:
    assert parse({"model": "m", "input": "hi", "max_output_tokens": 4}, "responses")["input"] == "hi"
    items = [{"role": "developer", "content": "brief"},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
             {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c", "output": "42"}]
    assert parse({"model": "m", "input": items, "text": {"format": {"type": "json_object"}}}, "responses")
    for patch, param in (({"input": []}, "input"), ({"max_output_tokens": 0}, "max_output_tokens"),
                         ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
                         ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role")):
        with pytest.raises(BadRequest) as info:
            parse({"model": "m", "input": "hi", **patch}, "responses")
        assert info.value.param == param, (patch, info.value.message)


@pytest.mark.parametrize("raw", [b"null", b"42", b"[]", b"{not json", b'"\xff"', b"[" * 100_000])
def test_bodies_that_are_not_objects_are_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse(raw)
    assert info.value.status_code == 400 and info.value.code in ("invalid_json", "invalid_body")


def test_the_published_schema_is_the_models() -> None:
    bodies, components = openapi_schemas()
    assert set(bodies) == {"chat", "completion", "responses"}
    roles = {components[name]["properties"]["role"].get("const") for name in components
             if name.endswith("Message") and "role" in components[name]["properties"]
             and name not in ("InputMessage",)}
    assert roles == set(ROLES)
    assert "tools" in components["ChatRequest"]["properties"]
    assert components["ChatRequest"]["properties"]["messages"]["minItems"] == 1
