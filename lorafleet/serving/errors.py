"""The data plane's root exception."""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = ["ServingError", "EngineError"]


class ServingError(LorafleetError):
    """Root of every serving error. HTTP-facing subclasses carry a status code."""

    status_code: int = 500


class EngineError(ServingError):
    """An engine that would not start, died, or answered nonsense."""

    status_code = 503
