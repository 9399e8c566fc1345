"""Validators, input checks, tenants and stream accounting: no engine needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorafleet.serving.drift import DriftMonitor, histogram, psi, reference_histograms
from lorafleet.serving.errors import BadRequest
from lorafleet.serving.exchange import SSEAccumulator, read_body
from lorafleet.serving.guardrails import TokenCounter, build_guards, find_pii
from lorafleet.serving.routes import Price, RoutesFile
from lorafleet.serving.tenants import Authenticator, KeysFile, RateLimited, Unauthorized, hash_key
from lorafleet.serving.validators import JsonSchemaValidator, PydanticValidator, load_validator

SCHEMA = {"type": "object", "required": ["intent"], "properties": {"intent": {"enum": ["refund", "other"]}},
          "additionalProperties": False}


def test_json_schema_validator_tells_reasons_apart() -> None:
    v = JsonSchemaValidator(SCHEMA)
    assert v.check('{"intent": "refund"}', "stop") is None
    assert v.check('{"intent": "refund"', "length")[0] == "truncated"
    assert v.check("hello there", "stop")[0] == "not_json"
    reason, detail = v.check('{"intent": "dance"}', "stop")
    assert reason == "schema_violation" and "intent" in detail


def test_pydantic_validator_by_name() -> None:
    v = load_validator("pydantic:lorafleet.serving.routes:Price", "/")
    assert isinstance(v, PydanticValidator)
    assert v.check('{"input_usd_per_million": 1}', "stop") is None
    assert v.check('{"input_usd_per_million": -1}', "stop")[0] == "schema_violation"
    assert "properties" in v.json_schema()


def test_a_missing_schema_rejects_the_routes(tmp_path: Path) -> None:
    routes = RoutesFile.parse_text("routes: {s: {stable: s@1, schema: nope.json, validator: reject}}", "r")
    with pytest.raises(Exception, match="nope.json"):
        build_guards(routes, tmp_path)


def _guard(tmp_path: Path, extra: str):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    routes = RoutesFile.parse_text(f"routes: {{s: {{stable: s@1, schema: schema.json, {extra}}}}}", "r")
    return build_guards(routes, tmp_path)["s"]


def _chat(*contents: str) -> dict:
    return {"model": "s", "messages": [{"role": "user", "content": c} for c in contents]}


def test_input_checks_refuse_naming_the_limit(tmp_path: Path) -> None:
    guard = _guard(tmp_path, "validator: enforce, max_messages: 2, max_prompt_tokens: 20")
    tokens = TokenCounter(None)
    with pytest.raises(BadRequest) as info:
        guard.check_input(_chat("a", "b", "c"), "chat", tokens)
    assert info.value.code == "too_many_messages"
    with pytest.raises(BadRequest) as info:
        guard.check_input(_chat("word " * 200), "chat", tokens)
    assert info.value.code == "prompt_too_long" and "20" in info.value.message
    assert guard.check_input(_chat("short"), "chat", tokens) is None


def test_enforce_adds_the_schema_to_the_request(tmp_path: Path) -> None:
    guard = _guard(tmp_path, "validator: enforce")
    body = _chat("hi")
    guard.constrain(body, "chat")
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    comp = {"model": "s", "prompt": "x"}
    guard.constrain(comp, "completion")
    assert comp["structured_outputs"] == {"json": SCHEMA}


def test_pii_reject_and_redact(tmp_path: Path) -> None:
    text = "mail me at jane.doe@example.com, card 4111 1111 1111 1111, order 1234567890123"
    kinds = sorted(k for k, _ in find_pii(text))
    assert kinds == ["card", "email"]  # the order number fails the Luhn check
    with pytest.raises(BadRequest) as info:
        _guard(tmp_path, "pii: reject").check_input(_chat(text), "chat", TokenCounter(None))
    assert info.value.code == "pii_detected" and "card" in info.value.message
    body = _chat(text)
    _guard(tmp_path, "pii: redact").check_input(body, "chat", TokenCounter(None))
    assert body["messages"][0]["content"] == "mail me at [EMAIL], card [CARD], order 1234567890123"


def test_tenants_keys_and_rate_limits(tmp_path: Path) -> None:
    keys = KeysFile()
    acme = keys.add_key("acme", routes=["support"])
    globex = keys.add_key("globex")
    keys.tenants["globex"].rate_limit_rps = 1
    text = keys.to_yaml()
    assert acme not in text and hash_key(acme) in text  # only hashes are stored
    auth = Authenticator(keys)
    assert auth.authenticate(f"Bearer {acme}").name == "acme"
    assert auth.authenticate(f"Bearer {acme}").may_call("support")
    assert not auth.authenticate(f"Bearer {acme}").may_call("other")
    for bad in (None, "Bearer nope", acme):
        with pytest.raises(Unauthorized):
            auth.authenticate(bad)
    auth.authenticate(f"Bearer {globex}")
    auth.authenticate(f"Bearer {globex}")  # burst of 2
    with pytest.raises(RateLimited) as info:
        auth.authenticate(f"Bearer {globex}")
    assert int(info.value.headers["Retry-After"]) >= 1
    open_mode = Authenticator(None)  # no keys file: every caller may call every route ...
    assert open_mode.authenticate(None, "203.0.113.9").may_call("support")
    for host in ("127.0.0.1", "127.8.0.1", "::1", "::ffff:127.0.0.1"):  # ... but only loopback is an admin
        assert open_mode.authenticate(None, host).admin, host
    for host in ("203.0.113.9", "10.0.0.1", "::ffff:10.0.0.1", None, "not-an-ip"):
        assert not open_mode.authenticate(None, host).admin, host


def test_sse_accumulator_counts_and_hides_unrequested_usage() -> None:
    def ev(d: dict) -> bytes:
        return f"data: {json.dumps(d)}\n\n".encode()

    stream = (ev({"choices": [{"index": 0, "delta": {"content": '{"in'}, "finish_reason": None}]})
              + ev({"choices": [{"index": 0, "delta": {"content": 'tent": 1}'}, "finish_reason": "stop"}]})
              + ev({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
              + b"data: [DONE]\n\n")
    acc = SSEAccumulator("chat", forward_usage=False)
    passed = []
    for i in range(0, len(stream), 7):  # arbitrary chunk boundaries
        assert not acc.ended  # until [DONE] has come whole
        passed += acc.feed(stream[i:i + 7], now_s=0.1)
    assert acc.ended
    passed += acc.flush()
    assert b"".join(passed).count(b"data: ") == 3 and b"usage" not in b"".join(passed)
    out = acc.outcome
    assert out.texts == {0: '{"intent": 1}'} and out.finish_reasons == {0: "stop"}
    assert (out.prompt_tokens, out.completion_tokens, out.ttft_s) == (7, 2, 0.1)
    kept = SSEAccumulator("chat", forward_usage=True)
    assert b"usage" in b"".join(kept.feed(stream, 0.0))


def test_a_responses_stream_ends_with_its_final_event() -> None:
    acc = SSEAccumulator("responses", forward_usage=False)
    acc.feed(b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "delta": "hi"}\n\n', 0.1)
    assert not acc.ended
    done = {"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 4}}}
    acc.feed(f"event: response.completed\ndata: {json.dumps(done)}\n\n".encode(), 0.2)
    assert acc.ended and acc.outcome.texts == {0: "hi"} and acc.outcome.prompt_tokens == 4


def test_read_body_for_both_kinds() -> None:
    chat = read_body({"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, "chat")
    assert chat.texts == {0: "hi"} and chat.prompt_tokens == 3
    comp = read_body({"choices": [{"index": 0, "text": "yo", "finish_reason": "length"}]}, "completion")
    assert comp.texts == {0: "yo"} and comp.finish_reasons == {0: "length"}


def test_price_per_million_and_per_gpu_hour() -> None:
    assert Price(input_usd_per_million=1, output_usd_per_million=2).cost_usd(1_000_000, 500_000) == 2.0
    gpu = Price(gpu_hour_usd=2.0, tokens_per_gpu_hour=1_000_000)
    assert gpu.cost_usd(250_000, 250_000) == 1.0
    with pytest.raises(ValueError):
        Price(gpu_hour_usd=2.0)


def test_drift_monitor_scores_shifted_windows_higher() -> None:
    edges = [8, 16, 32, 64, 128]
    fingerprint = {"features": {
        "prompt_tokens": {"edges": edges, "counts": histogram([10, 12, 20, 25, 30] * 20, edges)},
        "completion_tokens": {"edges": edges, "counts": histogram([5, 6, 7] * 30, edges)}}}
    ref = reference_histograms(fingerprint)
    assert reference_histograms(None) is None and psi([1, 2, 3], [1, 2, 3]) == 0.0
    mon = DriftMonitor(psi, window=100, min_samples=10)
    for i in range(50):
        mon.observe("r", "r@1", [10, 12, 20, 25, 30][i % 5], 6)
        mon.observe("r", "r@2", 500, 6)
    scores = mon.scores(lambda v: ref)
    assert scores[("r", "r@1", "prompt_tokens")] < 0.1
    assert scores[("r", "r@2", "prompt_tokens")] > 1.0
