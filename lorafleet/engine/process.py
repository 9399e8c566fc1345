"""Process helpers shared by engines, the detached server, tests and benchmarks: a free port,
an HTTP probe, stopping a whole process group, and tying a process group's life to ours
(a parent-death signal and a group reaper).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

__all__ = ["free_port", "end_process_group", "answers_ok", "die_with_parent", "GroupReaper"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def die_with_parent(sig: int = signal.SIGKILL):
    """A ``preexec_fn`` that asks Linux to send ``sig`` to the child when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); ``None`` (no preexec_fn) on other systems.

    The setting survives the child's ``exec`` but not its own forks, so it reaches vLLM's API
    server only, not the engine-core process it forks (see :class:`GroupReaper` for those).
    Linux means the parent *thread*: the child is signalled when the thread that started it
    ends, so start long-lived engines from a thread that outlives them.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


class GroupReaper:
    """SIGKILLs process group ``pgid`` as soon as this process ends, however it ends.

    A tiny shell (``/bin/sh``, about 1 MiB) waits on a pipe whose only writer is this process
    (the write end is close-on-exec, so no other child inherits it). When this process ends,
    even by SIGKILL, the kernel closes the pipe, the shell's ``read`` returns and it kills the
    whole group: measured with vLLM 0.32, its engine-core and worker processes outlive a killed
    API server, parent-death signal or not, because they are the API server's children, not
    ours. :meth:`disarm` stops the shell without firing (the group was stopped the normal way).
    """

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        read_fd, self._write_fd = os.pipe()  # both non-inheritable
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                ["/bin/sh", "-c", f"read _x; kill -9 -{int(pgid)}"],
                stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # out of our terminal's group: a Ctrl-C is handled by us
            )
        except OSError:
            os.close(self._write_fd)
            raise
        finally:
            os.close(read_fd)

    def disarm(self) -> None:
        """Stop the reaper without killing the group, and close our end of its pipe."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        os.close(self._write_fd)
