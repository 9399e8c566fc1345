"""Checks of an OpenAI request body before it is forwarded: a 400 that names the parameter.

Only what the gateway must be sure of is checked here; everything else passes through to
vLLM, whose own 400s (e.g. a prompt longer than the context) reach the client unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from lorafleet.serving.errors import BadRequest

__all__ = ["check_request", "ROLES"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def _bad(param: str, message: str) -> BadRequest:
    return BadRequest(f"Invalid parameter {param}: {message}", param=param, code="invalid_parameter")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_request(body: Any, kind: Literal["chat", "completion"]) -> dict:
    """Return ``body`` if it is a well-formed request of ``kind``; raise :class:`BadRequest`."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "a model name (string) is required")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("messages", "a non-empty list of messages is required")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise _bad(f"messages[{i}]", "each message must be an object")
            role = msg.get("role")
            if not isinstance(role, str) or role not in ROLES:
                raise _bad(f"messages[{i}].role", f"{msg.get('role')!r} is not one of {sorted(ROLES)}")
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
            raise _bad("prompt", "a prompt (string or non-empty list) is required")
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise _bad(name, f"{v!r} must be a positive integer")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16):
        raise _bad("n", f"{n!r} must be an integer from 1 to 16")
    for name, (lo, hi) in _RANGES.items():
        v = body.get(name)
        if v is not None and (not _is_number(v) or not lo <= v <= hi):
            raise _bad(name, f"{v!r} must be a number from {lo:g} to {hi:g}")
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise _bad("stream", f"{body['stream']!r} must be true or false")
    for name in ("stream_options", "response_format"):
        v = body.get(name)
        if v is not None and not isinstance(v, dict):
            raise _bad(name, "must be an object")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "must be a string")
    return body
