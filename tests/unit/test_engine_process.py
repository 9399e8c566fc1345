"""A process group dies with the process that started it (issue 14, defect 9), checked with real
processes (``sleep``) in place of vLLM: the parent-death signal reaches the direct child, the
group reaper reaches the rest of its group (vLLM's engine core is the API server's child, not
ours), and a disarmed reaper kills nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lorafleet.engine.process import GroupReaper, end_process_group

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

# a starter process: runs a leader in its own group with a grandchild in that group, as vLLM's API
# server runs its engine core, then prints the group id and waits to be killed
STARTER = textwrap.dedent("""
    import subprocess, sys, time
    from lorafleet.engine.process import GroupReaper, die_with_parent
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True,
                              preexec_fn=die_with_parent() if sys.argv[1] == "pdeathsig" else None)
    if sys.argv[2] == "reaper":
        reaper = GroupReaper(leader.pid)
    print(leader.pid, flush=True)
    time.sleep(60)
""")


def live(pgid: int) -> list[int]:
    """Live (not zombie) members of a process group."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read()
            except OSError:
                continue
            rest = stat[stat.rindex(")") + 2:].split()
            if int(rest[2]) == pgid and rest[0] != "Z":
                out.append(int(name))
    return out


def started_group(*mode: str) -> tuple[subprocess.Popen, int]:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, *mode], stdout=subprocess.PIPE, text=True)
    pgid = int(starter.stdout.readline())
    deadline = time.monotonic() + 10
    while len(live(pgid)) < 2 and time.monotonic() < deadline:  # the shell and its sleep
        time.sleep(0.05)
    assert len(live(pgid)) == 2, live(pgid)
    return starter, pgid


def gone_within(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not live(pgid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", [("pdeathsig", "reaper"), ("none", "reaper")])
def test_the_reaper_kills_the_whole_group_when_its_starter_is_killed(mode) -> None:
    starter, pgid = started_group(*mode)
    try:
        starter.kill()
        starter.wait()
        assert gone_within(pgid, 5), live(pgid)
    finally:
        end_process_group(pgid, grace_s=0.5)


def test_the_parent_death_signal_alone_reaches_only_the_direct_child() -> None:
    """Why the reaper is there: the leader dies with its parent, its own children do not."""
    starter, pgid = started_group("pdeathsig", "none")
    try:
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 5
        while pgid in live(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = live(pgid)
        assert pgid not in left  # the leader got its SIGKILL
        assert len(left) == 1  # its sleep lives on, orphaned
    finally:
        end_process_group(pgid, grace_s=0.5)


def test_a_disarmed_reaper_kills_nothing_and_closes_its_pipe() -> None:
    leader = subprocess.Popen(["sleep", "60"], start_new_session=True)
    fds_before = len(os.listdir("/proc/self/fd"))
    reaper = GroupReaper(leader.pid)
    try:
        assert len(os.listdir("/proc/self/fd")) == fds_before + 1  # our end of its pipe
        reaper.disarm()
        assert reaper.proc is None and len(os.listdir("/proc/self/fd")) == fds_before
        time.sleep(0.3)
        assert leader.poll() is None
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
