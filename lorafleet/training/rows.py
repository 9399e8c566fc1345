"""Reading JSONL datasets and checking each row's shape (chat SFT rows, DPO preference rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafleet.training.errors import DataCheckError

__all__ = ["Row", "read_jsonl", "chat_row_problem", "dpo_row_problem", "user_text", "as_messages", "ROLES"]

ROLES = ("system", "user", "assistant")


@dataclass
class Row:
    """One parsed row and its 1-based line number in its file."""

    line: int
    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def read_jsonl(path: Path, split: str) -> list[Row]:
    """Parse every line; a malformed line or a non-object is a hard error naming the line."""
    if not path.is_file():
        raise DataCheckError(f"data.{split}: {path}: no such file")
    rows, bad = [], []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append(f"line {i}: malformed JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(obj, dict):
                bad.append(f"line {i}: expected a JSON object, got {type(obj).__name__}")
                continue
            rows.append(Row(i, obj))
    if bad:
        raise DataCheckError(f"data.{split}: {path}: " + "; ".join(bad[:20]) + (f" (+{len(bad) - 20} more)" if len(bad) > 20 else ""))
    if not rows:
        raise DataCheckError(f"data.{split}: {path}: empty dataset (no rows)")
    return rows


def _message_problem(msgs: Any, where: str) -> str | None:
    if not isinstance(msgs, list) or not msgs:
        return f"{where} must be a non-empty list of messages"
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return f"{where}[{j}] must be an object with role and content"
        if m["role"] not in ROLES:
            return f"{where}[{j}].role={m['role']!r} is not one of {', '.join(ROLES)}"
        if not isinstance(m["content"], str):
            return f"{where}[{j}].content must be a string"
    return None


def chat_row_problem(data: dict[str, Any]) -> str | None:
    """Why a chat row is invalid, or None: roles system? then user/assistant alternating, final assistant non-empty."""
    if "messages" not in data:
        return f"missing key 'messages' (keys: {', '.join(sorted(data)) or 'none'})"
    msgs = data["messages"]
    problem = _message_problem(msgs, "messages")
    if problem:
        return problem
    roles = [m["role"] for m in msgs]
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        return f"messages[{roles.index('system', 1)}]: a system message is only allowed first"
    for j, role in enumerate(body):
        expected = "user" if j % 2 == 0 else "assistant"
        if role != expected:
            k = j + (len(roles) - len(body))
            return f"messages[{k}].role={role!r}: expected {expected!r} (roles must alternate user/assistant)"
    if not body or body[-1] != "assistant":
        return "the last message must be an assistant turn"
    if not msgs[-1]["content"].strip():
        return "the final assistant turn is empty"
    return None


def as_messages(value: Any, role: str) -> list[dict[str, str]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def dpo_row_problem(data: dict[str, Any]) -> str | None:
    """Why a DPO row is invalid, or None: prompt (text or messages ending in user), chosen, rejected."""
    for key in ("prompt", "chosen", "rejected"):
        if key not in data:
            return f"missing key {key!r} (keys: {', '.join(sorted(data)) or 'none'})"
    prompt = as_messages(data["prompt"], "user")
    problem = _message_problem(prompt, "prompt")
    if problem:
        return problem
    if prompt[-1]["role"] != "user":
        return f"prompt[-1].role={prompt[-1]['role']!r}: the prompt must end with a user turn"
    for key in ("chosen", "rejected"):
        msgs = as_messages(data[key], "assistant")
        problem = _message_problem(msgs, key)
        if problem:
            return problem
        if any(m["role"] != "assistant" for m in msgs):
            return f"{key}: only assistant turns are allowed"
        if not "".join(m["content"] for m in msgs).strip():
            return f"{key}: empty answer"
    if data["chosen"] == data["rejected"]:
        return "chosen and rejected are identical"
    return None


def user_text(data: dict[str, Any]) -> str:
    """The user-side text of a valid row (what duplicates and leakage are judged on)."""
    msgs = data["messages"] if "messages" in data else as_messages(data["prompt"], "user")
    return "\n".join(m["content"] for m in msgs if m["role"] == "user")
