"""The one base class of every user-facing config (house rule 1).

``extra="forbid"`` so a typo in a YAML key is an error naming the key, and
:meth:`ConfigModel.from_yaml` turns pydantic's errors into one readable line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lorafleet.core.errors import LorafleetError

__all__ = ["ConfigModel", "ConfigError", "format_validation_error"]


class ConfigError(LorafleetError, ValueError):
    """A config file or value that does not validate."""


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message (got VALUE)``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{loc}: {e['msg']}{shown}")
    return f"{source}: " + "; ".join(parts)


class ConfigModel(BaseModel):
    """Base of all lorafleet configs: strict keys, validated on assignment, YAML in and out."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "config") -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
        return cls.from_mapping(data if data is not None else {}, source=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)
