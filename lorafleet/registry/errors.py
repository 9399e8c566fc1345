"""The registry's root exception."""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = ["RegistryError", "NotFound", "IntegrityError", "IncompatibleAdapter"]


class RegistryError(LorafleetError):
    """Root of every registry error."""


class NotFound(RegistryError, LookupError):
    """A base, adapter, version or alias that does not exist. The message lists what does."""


class IntegrityError(RegistryError):
    """Stored bytes that do not match their recorded sha256; names the file."""


class IncompatibleAdapter(RegistryError):
    """An adapter that does not fit a base or an engine; names the mismatch."""
