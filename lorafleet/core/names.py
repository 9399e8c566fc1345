"""The one grammar of names: safe identifiers for bases, adapters and aliases (they become
folder and object names), and adapter version references ``name@N`` (N >= 1).

Every part that reads a name or a ``name@N`` uses these functions; nothing else parses them.
"""

from __future__ import annotations

import re

from lorafleet.core.errors import InputError

__all__ = ["NAME_PATTERN", "VERSION_REF", "VERSION_REF_IN_TEXT", "check_name", "parse_version_ref",
           "is_version_ref", "split_ref"]

_NAME = r"[a-z0-9][a-z0-9._-]{0,63}"
# Lower-case letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64.
NAME_PATTERN = re.compile(rf"^{_NAME}$")
# name@N: versions count from 1 (a registry never writes @0).
VERSION_REF = re.compile(rf"^(?P<name>{_NAME})@(?P<version>[1-9][0-9]*)$")
# name@N inside free text (a YAML value, a log line): not glued to a longer name or number.
VERSION_REF_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9._-])(?P<name>{_NAME})@(?P<version>[1-9][0-9]*)(?![0-9])")


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


def parse_version_ref(ref: str, field: str = "version") -> tuple[str, int]:
    """Split ``name@N`` into (name, N); raise :class:`InputError` (a ValueError) otherwise."""
    m = VERSION_REF.match(ref) if isinstance(ref, str) else None
    if not m or ".." in ref:
        raise InputError(field, ref, "not a version reference of the form name@N (N >= 1)")
    return m["name"], int(m["version"])


def is_version_ref(ref: str) -> bool:
    """True for a well-formed ``name@N``."""
    return isinstance(ref, str) and VERSION_REF.match(ref) is not None and ".." not in ref


def split_ref(ref: str, field: str = "REF") -> tuple[str, str | None]:
    """``NAME``, ``NAME@N`` or ``NAME@ALIAS`` -> (name, "N" | alias | None); names checked.

    A numeric selector must be a valid version (``@0`` and ``@007`` are refused); any other
    selector is an alias name.
    """
    name, sep, rest = ref.partition("@") if isinstance(ref, str) else ("", "", "")
    check_name(name, field)
    if not sep:
        return name, None
    if not rest:
        raise InputError(field, ref, "expected NAME, NAME@N or NAME@ALIAS")
    if rest.isdigit():
        parse_version_ref(ref, field)
        return name, rest
    check_name(rest, field)
    return name, rest
