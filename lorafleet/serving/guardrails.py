"""Per-route guardrails: input checks before a request reaches an engine, and the response
validator that checks what comes back.

Built once per routes-file version (:func:`build_guards`), so a schema that cannot be
loaded rejects the whole routes file and the last good routes stay in force.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafleet.core.checksums import luhn_valid
from lorafleet.serving.errors import BadRequest, ServingError
from lorafleet.serving.routes import Route, RoutesFile
from lorafleet.serving.validators import JsonSchemaValidator, ResponseValidator, load_validator

__all__ = ["RouteGuard", "build_guards", "find_pii", "TokenCounter"]

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


_PROMPT_PARAM = {"chat": "messages", "completion": "prompt", "responses": "input"}


def find_pii(text: str) -> list[tuple[str, re.Match]]:
    """E-mail addresses and (Luhn-valid) card numbers in ``text``."""
    found = [("email", m) for m in EMAIL.finditer(text)]
    found += [("card", m) for m in CARD.finditer(text) if luhn_valid(re.sub(r"\D", "", m.group()))]
    return found


def _redact(text: str) -> str:
    text = EMAIL.sub("[EMAIL]", text)
    return CARD.sub(lambda m: "[CARD]" if luhn_valid(re.sub(r"\D", "", m.group())) else m.group(), text)


class TokenCounter:
    """Counts prompt tokens with the base's tokenizer (tokenizers, no torch); None: estimate."""

    def __init__(self, tokenizer_json: Path | None) -> None:
        self._tok = None
        if tokenizer_json is not None and tokenizer_json.is_file():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(tokenizer_json))

    def count(self, text: str) -> int:
        if self._tok is None:
            return max(1, len(text) // 4)
        return len(self._tok.encode(text, add_special_tokens=False).ids)


def _part_texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text", ""), str)]
    return []


def _texts(body: dict, kind: str) -> list[str]:
    if kind == "responses":
        out = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        items = body["input"]
        if isinstance(items, str):
            return [*out, items]
        for item in items:
            if isinstance(item, dict):
                out += _part_texts(item.get("content")) + _part_texts(item.get("output"))
        return out
    if kind == "chat":
        out = []
        for m in body["messages"]:
            c = m.get("content")
            if isinstance(c, str):
                out.append(c)
            elif isinstance(c, list):
                out += [p.get("text", "") for p in c if isinstance(p, dict)]
        return out
    prompt = body["prompt"]
    return [prompt] if isinstance(prompt, str) else [p for p in prompt if isinstance(p, str)]


@dataclass(frozen=True)
class RouteGuard:
    name: str
    route: Route
    validator: ResponseValidator | None

    def check_input(self, body: dict, kind: str, tokens: TokenCounter) -> str | None:
        """Refuse (BadRequest) or redact in place; return the reason of a refusal for metrics."""
        r = self.route
        if kind == "chat" and r.max_messages is not None and len(body["messages"]) > r.max_messages:
            raise BadRequest(f"Too many messages: {len(body['messages'])} > {r.max_messages} for this model.",
                             param="messages", code="too_many_messages")
        texts = _texts(body, kind)
        if r.max_prompt_tokens is not None:
            n = sum(tokens.count(t) for t in texts)
            if n > r.max_prompt_tokens:
                raise BadRequest(f"The prompt has {n} tokens; this model accepts at most {r.max_prompt_tokens}.",
                                 param=_PROMPT_PARAM[kind], code="prompt_too_long")
        if r.pii is None:
            return None
        kinds = sorted({k for t in texts for k, _ in find_pii(t)})
        if not kinds:
            return None
        if r.pii == "reject":
            raise BadRequest(f"The prompt contains personal data ({', '.join(kinds)}); remove it.",
                             param=_PROMPT_PARAM[kind], code="pii_detected")
        _redact_body(body, kind)
        return None

    def constrain(self, body: dict, kind: str) -> None:
        """Enforce mode: ask vLLM to decode under the schema (unless the client set a format)."""
        if self.route.validator != "enforce" or self.validator is None:
            return
        schema = self.validator.json_schema()
        if schema is None:
            return
        if kind == "chat" and "response_format" not in body:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": self.name.replace(".", "_"), "schema": schema}}
        elif kind == "responses" and not (body.get("text") or {}).get("format"):
            body["text"] = {**(body.get("text") or {}), "format": {
                "type": "json_schema", "name": self.name.replace(".", "_"), "schema": schema}}
        elif kind == "completion" and "structured_outputs" not in body:
            body["structured_outputs"] = {"json": schema}


def _redact_content(holder: dict, key: str) -> None:
    c: Any = holder.get(key)
    if isinstance(c, str):
        holder[key] = _redact(c)
    elif isinstance(c, list):
        for part in c:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = _redact(part["text"])


def _redact_body(body: dict, kind: str) -> None:
    if kind == "responses":
        _redact_content(body, "instructions")
        if isinstance(body["input"], str):
            _redact_content(body, "input")
            return
        for item in body["input"]:
            if isinstance(item, dict):
                _redact_content(item, "content")
                _redact_content(item, "output")
        return
    if kind != "chat":
        p = body["prompt"]
        body["prompt"] = _redact(p) if isinstance(p, str) else [_redact(x) if isinstance(x, str) else x for x in p]
        return
    for m in body["messages"]:
        c: Any = m.get("content")
        if isinstance(c, str):
            m["content"] = _redact(c)
        elif isinstance(c, list):
            for part in c:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = _redact(part["text"])


def build_guards(routes: RoutesFile, source) -> dict[str, RouteGuard]:
    """One guard per route; raises if a schema cannot be loaded. ``source`` is the routes
    document's :class:`~lorafleet.serving.routes_source.RoutesSource` (relative schema paths are
    read beside it: files beside a routes file, objects beside a document in the store), or
    the folder of a routes file."""
    from lorafleet.serving.routes_source import as_source

    load_validator.cache_clear()  # schema files may have changed with the routes file
    source = as_source(source / "routes.yaml") if isinstance(source, Path) else source
    folder = source.schema_dir()

    def validator(spec: str):
        if folder is not None or spec.startswith("pydantic:"):
            return load_validator(spec, str(folder))
        try:
            return JsonSchemaValidator(json.loads(source.schema_text(spec)))
        except (OSError, ValueError) as err:
            raise ServingError(f"schema {spec!r}: cannot load it from {source.name} ({err})") from None

    return {name: RouteGuard(name, route, validator(route.schema_path) if route.schema_path else None)
            for name, route in routes.routes.items()}
