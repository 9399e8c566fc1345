"""The engine package's root exception."""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = ["EngineError"]


class EngineError(LorafleetError):
    """An engine that would not start, died, or answered nonsense."""
