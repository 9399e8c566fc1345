"""The background server's pid file (`platform serve --detach`) and the loopback test: what the
CLI reads to find a running gateway, kept light so that `platform promote` and friends start
without importing the gateway (FastAPI, aiohttp: about a second)."""

from __future__ import annotations

import ipaddress
import json
import os

from lorafleet.core.settings import Settings

__all__ = ["PID_FILE", "read_pid_file", "is_loopback"]

PID_FILE = "serve.json"


def is_loopback(host: str) -> bool:
    """True for an address (or ``localhost``) that only this machine can reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def read_pid_file(settings: Settings) -> dict | None:
    """The running background server's record, or None (a stale file is removed)."""
    pid_file = settings.layout.run / PID_FILE
    if not pid_file.is_file():
        return None
    record = json.loads(pid_file.read_text())
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return None
    return record
