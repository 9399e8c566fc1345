"""The supervised engine of a real server process (issue 14, defects 6 and 9).

One ``python -m lorafleet.serving.server`` process, in a platform home of its own, starts and
supervises a real vLLM engine on the tiny base; the official openai client talks to its gateway.

- SIGSTOP of the engine's API server (alive, /health never answers): requests get OpenAI-shaped
  503s with Retry-After, the supervisor kills the hung group and starts a new engine on a fresh
  port within 30 s, the gateway follows it without a restart and traffic recovers.
- SIGKILL of the server: every process of its engine's group (API server, engine core, worker)
  and the group reaper are gone within 10 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from lorafleet.core.settings import Settings
from lorafleet.engine.process import answers_ok, end_process_group, free_port
from tests.conftest import TINY_BASE

pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "Tell me about the sea."}]
RESTART_UNHEALTHY_AFTER_S = 6.0  # the server's --restart-unhealthy-after-s here (default 60)
START_S = 300.0  # an engine start on 2 shared cores, with margin


# -- processes, read from /proc -----------------------------------------------------------------
def _stat(pid: str) -> tuple[str, str, int, int] | None:
    """(name, state, ppid, pgid) of a process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1: stat.rindex(")")], rest[0], int(rest[1]), int(rest[2])


def _processes() -> dict[int, tuple[str, str, int, int]]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (st := _stat(p.name)) is not None:
            out[int(p.name)] = st
    return out


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as 'pid name'."""
    return [f"{pid} {name}" for pid, (name, state, _, g) in _processes().items() if g == pgid and state != "Z"]


def alive(pid: int) -> bool:
    st = _stat(str(pid))
    return st is not None and st[1] != "Z"


def children(pid: int) -> list[int]:
    return [p for p, (_, state, ppid, _) in _processes().items() if ppid == pid and state != "Z"]


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def engine_pid(server_pid: int) -> int:
    """The vLLM API server the server process started (its child running vLLM's entry point)."""
    found = [p for p in children(server_pid) if "vllm.entrypoints" in cmdline(p)]
    assert len(found) == 1, [(p, cmdline(p)) for p in children(server_pid)]
    return found[0]


def wait_for(predicate, timeout_s: float, what: str) -> float:
    """Poll until ``predicate()``; the time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s")


# -- the server ------------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen
    root_url: str
    log: Path

    @property
    def url(self) -> str:
        return f"{self.root_url}/v1"

    def engines(self) -> list[dict]:
        return httpx.get(f"{self.root_url}/admin/engines", timeout=10).json()["engines"]  # loopback: admin

    def log_tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.is_file() else ""


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server process with its own home and supervised engine (the module's one engine)."""
    from lorafleet.platform.base_pull import pull_base

    home = tmp_path_factory.mktemp("supervised-home")
    pull_base(Settings(home=home), TINY_BASE, tiny_model_dir)
    port = free_port()
    log = home / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lorafleet.serving.server", "--base", TINY_BASE, "--port", str(port),
             "--restart-unhealthy-after-s", str(RESTART_UNHEALTHY_AFTER_S)],
            env={**os.environ, "LORAFLEET_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_for(lambda: proc.poll() is not None or answers_ok(f"{srv.root_url}/readyz"), START_S, "server ready")
        assert proc.poll() is None, srv.log_tail()
        yield srv
    finally:
        engines = [p for p in children(proc.pid) if "vllm.entrypoints" in cmdline(p)] if proc.poll() is None else []
        end_process_group(proc.pid, grace_s=30)  # the server stops its engine
        proc.wait(timeout=30)
        for pid in engines:  # nothing is left behind whatever the tests did
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
            end_process_group(pid, grace_s=2)


@dataclass
class Outcome:
    started: float
    status: int  # 200 for a good answer, 0 for no HTTP answer
    retry_after: str | None = None
    error: dict | None = None
    detail: str = ""


class Traffic:
    """One client thread sending small chat completions (1 in 3 streamed) until stopped."""

    def __init__(self, url: str) -> None:
        self.client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, n: int) -> Outcome:
        out = Outcome(time.monotonic(), 200)
        try:
            if n % 3 == 0:
                chunks = list(self.client.chat.completions.create(model=TINY_BASE, messages=MSG, max_tokens=4,
                                                                  stream=True, user=f"u{n}"))
                assert chunks, "an empty stream"
            else:
                self.client.chat.completions.create(model=TINY_BASE, messages=MSG, max_tokens=4, user=f"u{n}")
        except openai.APIStatusError as exc:
            out.status, out.detail = exc.status_code, exc.message
            out.retry_after = exc.response.headers.get("retry-after")
            with contextlib.suppress(ValueError):
                out.error = exc.response.json().get("error")
        except openai.APIError as exc:  # a connection failure, or an error event in a stream
            out.status, out.detail = 0, f"{type(exc).__name__}: {exc}"
        return out

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            out = self._one(n)
            self.outcomes.append(out)
            if out.status != 200:
                time.sleep(0.25)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "the client hung"


def test_a_hung_engine_is_restarted_on_a_fresh_port_and_the_gateway_follows(server: Server) -> None:
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    assert client.chat.completions.create(model=TINY_BASE, messages=MSG, max_tokens=4).choices
    [before] = server.engines()
    old_pid = engine_pid(server.proc.pid)
    assert len(group_members(old_pid)) >= 2, group_members(old_pid)  # the API server and its engine core
    try:
        with Traffic(server.url) as traffic:
            time.sleep(1.5)
            stopped_at = time.monotonic()
            os.kill(old_pid, signal.SIGSTOP)  # alive, but answers nothing
            killed_s = wait_for(lambda: not alive(old_pid), 30,
                                "the supervisor kills the hung engine to restart it")
            moved_s = killed_s + wait_for(lambda: server.engines()[0]["url"] != before["url"], START_S,
                                          "the gateway learns the new engine's URL")
            wait_for(lambda: server.engines()[0]["healthy"], 30, "the gateway sees the new engine healthy")
            recovered_at = time.monotonic()
            time.sleep(3)
        outcomes = traffic.outcomes
    except BaseException:
        print(server.log_tail())
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever happened, the stopped group goes
            os.killpg(old_pid, signal.SIGKILL)
    [after] = server.engines()
    print(f"\nSIGSTOP: hung engine killed {killed_s:.1f}s after the stop, the gateway on the new engine "
          f"{moved_s:.1f}s after it, traffic back after "
          f"{recovered_at - stopped_at:.1f}s, {len(outcomes)} requests, "
          f"{sum(o.status == 503 for o in outcomes)} x 503")
    assert server.proc.poll() is None  # no gateway restart
    assert after["url"] != before["url"] and after["healthy"]
    assert after["url"].rsplit(":", 1)[1] != before["url"].rsplit(":", 1)[1]  # a fresh port
    assert group_members(old_pid) == []  # the hung group is gone, engine core and worker too
    during = [o for o in outcomes if stopped_at <= o.started < recovered_at]
    unavailable = [o for o in during if o.status == 503]
    assert unavailable, [(o.status, o.detail) for o in during]
    for o in unavailable:  # OpenAI's error shape, with a Retry-After
        assert o.error is not None and set(o.error) == {"message", "type", "param", "code"}, o.error
        assert o.error["code"] == "engine_unavailable" and int(o.retry_after) > 0, (o.error, o.retry_after)
    # only requests already waiting on the stopped engine may end some other way (cut off or timed out)
    first_503 = min(o.started for o in unavailable)
    odd = [o for o in during if o.status not in (200, 503) and o.started >= first_503]
    assert odd == [], [(o.status, o.detail) for o in odd]
    late = [o for o in outcomes if o.started >= recovered_at]
    assert late and all(o.status == 200 for o in late), [(o.status, o.detail) for o in late if o.status != 200]
    assert "is alive but /health has not answered" in server.log_tail(200_000)


def test_a_killed_server_takes_its_engine_with_it(server: Server) -> None:
    pid = engine_pid(server.proc.pid)
    members = group_members(pid)
    assert len(members) >= 2, members  # the API server and its engine core (and its worker)
    reapers = [p for p in children(server.proc.pid) if p != pid and cmdline(p).startswith("/bin/sh")]
    assert len(reapers) == 1, [(p, cmdline(p)) for p in children(server.proc.pid)]
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    try:
        took_s = wait_for(lambda: group_members(pid) == [] and not alive(reapers[0]), 10,
                          f"the engine's group {members} ends with its server")
        print(f"\nSIGKILL of the server: its engine group ({len(members)} processes) gone in {took_s:.1f}s")
    finally:
        end_process_group(pid, grace_s=1)
