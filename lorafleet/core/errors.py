"""The root of every lorafleet exception.

Each part has one root of its own (``RegistryError``, ``TrainingError``, ``ServingError``,
``PlatformError``) that subclasses :class:`LorafleetError`; the CLI turns any of them
into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = ["LorafleetError", "InputError"]


class LorafleetError(Exception):
    """Root of all lorafleet errors. The message is meant for the user, on one line."""


class InputError(LorafleetError, ValueError):
    """Bad user input: names the field (or path) and shows the bad value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}={value!r}: {problem}")
