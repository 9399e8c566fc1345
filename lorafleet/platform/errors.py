"""The control plane's root exception."""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = ["PlatformError"]


class PlatformError(LorafleetError):
    """Root of every control-plane error."""
