"""The benchmarks' server processes: each in its own session, ready when a path answers 200,
stopped with its whole process group; its CPU time readable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lorafleet.engine.process import answers_ok

__all__ = ["Proc", "gateway_process"]


class Proc:
    """A server process of the benchmark in its own session (stopped with its whole group)."""

    def __init__(self, name: str, cmd: list[str], url: str, ready_path: str, env: dict, log: Path) -> None:
        self.name, self.url, self.log = name, url, log
        self.popen = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise SystemExit(f"{name} exited with {self.popen.returncode}; see {log}")
            if answers_ok(f"{url}{ready_path}", timeout_s=2):
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} not ready in 120 s; see {log}")

    def cpu_s(self) -> float:
        import psutil

        t = psutil.Process(self.popen.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        from lorafleet.engine.process import end_process_group

        if self.popen.poll() is None:
            end_process_group(self.popen.pid)


def gateway_process(name: str, home: Path, base: str, engine_url: str, port: int) -> Proc:
    env = {**os.environ, "LORAFLEET_HOME": str(home)}
    cmd = [sys.executable, "-m", "lorafleet.serving.server", "--base", base, "--port", str(port),
           "--engine-url", engine_url]
    return Proc(name, cmd, f"http://127.0.0.1:{port}", "/readyz", env, home / f"{name}.log")


