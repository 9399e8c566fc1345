"""Who is acting: the OS user recorded in audit entries and routes history."""

from __future__ import annotations

import getpass

__all__ = ["current_user"]


def current_user() -> str:
    """The OS user name, or "unknown" where the platform cannot say (no passwd entry in a container)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
