"""Response validators: does an adapter's output satisfy its route's schema?

A validator is an abstract base with one typed method; two kinds exist, a JSON schema
file and a named pydantic model (``module:Class``). Failure reasons are told apart:
``truncated`` (cut off by max_tokens), ``not_json`` and ``schema_violation``.
"""

from __future__ import annotations

import abc
import importlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from lorafleet.serving.errors import ServingError

__all__ = ["Reason", "ResponseValidator", "JsonSchemaValidator", "PydanticValidator", "load_validator",
           "REASONS"]

Reason = Literal["truncated", "not_json", "schema_violation"]
REASONS: tuple[Reason, ...] = ("truncated", "not_json", "schema_violation")


class ResponseValidator(abc.ABC):
    """Checks one completion's text; returns None when valid, else the reason and a detail."""

    @abc.abstractmethod
    def check(self, text: str, finish_reason: str | None) -> tuple[Reason, str] | None: ...

    def json_schema(self) -> dict | None:
        """The JSON schema to constrain decoding with (enforce mode), if there is one."""
        return None


def _parse(text: str, finish_reason: str | None) -> tuple[object | None, tuple[Reason, str] | None]:
    try:
        return json.loads(text), None
    except (ValueError, TypeError) as err:
        if finish_reason == "length":
            return None, ("truncated", "the output was cut off by max_tokens before the JSON was complete")
        return None, ("not_json", f"the output is not JSON ({err})")


class JsonSchemaValidator(ResponseValidator):
    def __init__(self, schema: dict) -> None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def check(self, text: str, finish_reason: str | None) -> tuple[Reason, str] | None:
        data, problem = _parse(text, finish_reason)
        if problem:
            return problem
        error = next(iter(self._validator.iter_errors(data)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            return "schema_violation", f"{where}: {error.message}"
        return None

    def json_schema(self) -> dict | None:
        return self.schema


class PydanticValidator(ResponseValidator):
    def __init__(self, model: type) -> None:
        self.model = model

    def check(self, text: str, finish_reason: str | None) -> tuple[Reason, str] | None:
        from pydantic import ValidationError

        data, problem = _parse(text, finish_reason)
        if problem:
            return problem
        try:
            self.model.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            return "schema_violation", f"{'/'.join(map(str, first['loc'])) or '<root>'}: {first['msg']}"
        return None

    def json_schema(self) -> dict | None:
        return self.model.model_json_schema()


@lru_cache(maxsize=64)
def load_validator(spec: str, base_dir: str) -> ResponseValidator:
    """``path/to/schema.json`` (relative to the routes file) or ``pydantic:module:Class``."""
    if spec.startswith("pydantic:"):
        module, _, name = spec.removeprefix("pydantic:").partition(":")
        try:
            model = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ServingError(f"schema {spec!r}: cannot import the pydantic model ({err})") from None
        return PydanticValidator(model)
    path = Path(spec) if Path(spec).is_absolute() else Path(base_dir) / spec
    try:
        return JsonSchemaValidator(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise ServingError(f"schema {spec!r}: cannot load {path} ({err})") from None
