"""Durations written by people (``30s``, ``10m``, ``1h30m``, ``90``) read as seconds, in one place."""

from __future__ import annotations

import re

from lorafleet.core.errors import InputError

__all__ = ["parse_duration_s"]

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_duration_s(text: str, field: str = "duration") -> float:
    """``90`` / ``30s`` / ``10m`` / ``1h30m`` / ``1.5h`` -> seconds; a bare number is seconds.

    Raises :class:`InputError` (a ValueError) naming ``field`` for anything else.
    """
    compact = text.strip().replace(" ", "") if isinstance(text, str) else ""
    parts = list(_PART.finditer(compact))
    if not compact or "".join(m[0] for m in parts) != compact or any(not m[2] for m in parts[:-1]):
        raise InputError(field, text, "not a duration (e.g. 90, 30s, 10m, 1h30m)")
    return sum(float(m[1]) * _UNIT_S[m[2]] for m in parts)
