"""Safe identifiers for bases, adapters and aliases (they become folder and object names)."""

from __future__ import annotations

import re

from lorafleet.core.errors import InputError

__all__ = ["NAME_PATTERN", "check_name"]

# Lower-case letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_name(name: str, field: str = "name") -> str:
    """Return ``name`` if it is a safe identifier, else raise :class:`InputError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise InputError(
            field,
            name,
            "not a safe name: use 1-64 lower-case letters, digits, '.', '-' or '_', "
            "starting with a letter or digit",
        )
    return name
