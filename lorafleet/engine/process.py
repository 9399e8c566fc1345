"""Process helpers shared by engines, the detached server, tests and benchmarks: a free port,
an HTTP probe, and stopping a whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

import httpx

__all__ = ["free_port", "end_process_group", "answers_ok"]


def answers_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if a GET of ``url`` answers 200 (health and readiness probes); any failure is False."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def end_process_group(pgid: int, grace_s: float = 5.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left of it after ``grace_s``.

    Used for what is left of an engine's group once its leader has exited, and to stop the
    detached server.

    vLLM's engine-core and worker processes outlive an API server killed with SIGKILL (or by
    the OOM killer); left alone they keep the model and its KV cache in memory for good.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
