"""Processes of a fleet on one machine, each with its own LORAFLEET_HOME (as separate machines
would be): engines (`platform engine`) and gateways (`platform serve`) over one S3 registry, and
`platform` commands run from any home. Used by tests/integration/test_fleet.py and
benchmarks/fleet_bench.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from lorafleet.core.settings import Settings
from lorafleet.engine.process import answers_ok, free_port
from lorafleet.platform.base_pull import pull_base
from tests.conftest import TINY_BASE
from tests.registry_backends import S3_ENV

__all__ = ["Fleet", "BUCKET", "PREFIX", "ENGINE_KEY", "PLATFORM"]

BUCKET, PREFIX = "lorafleet-fleet", "fleet"
ENGINE_KEY = "engine-secret-for-tests"
PLATFORM = str(Path(sys.executable).with_name("platform"))


class Fleet:
    def __init__(self, root: Path, endpoint: str, tiny_dir: Path, base: str = TINY_BASE) -> None:
        self.root, self.endpoint, self.tiny_dir, self.base = root, endpoint, tiny_dir, base
        self.procs: dict[str, subprocess.Popen] = {}
        self.extra_env: dict[str, str] = {}  # for every process (e.g. a larger max LoRA rank)
        self.ports: dict[str, int] = {}

    def home(self, name: str) -> Path:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        return home

    def env(self, name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFLEET_", "VLLM_"))}
        env.update(S3_ENV, LORAFLEET_HOME=str(self.home(name)), LORAFLEET_REGISTRY_URL=f"s3://{BUCKET}/{PREFIX}",
                   LORAFLEET_S3_ENDPOINT_URL=self.endpoint, LORAFLEET_ROUTES_SOURCE="registry",
                   LORAFLEET_ADAPTER_LOADING="engine", LORAFLEET_ENGINE_API_KEY=ENGINE_KEY,
                   LORAFLEET_DEFAULT_BASE=self.base, LORAFLEET_ENGINE_MAX_LORA_RANK="16",
                   LORAFLEET_ENGINE_KVCACHE_GIB="1")
        env.update(self.extra_env, **extra)
        return env

    def settings(self, name: str) -> Settings:
        return Settings(home=self.home(name), registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=self.endpoint,
                        routes_source="registry", default_base=self.base)

    def pull_base(self, name: str) -> None:
        """This machine's own copy of the base (converted there, nothing shared)."""
        src = shutil.copytree(self.tiny_dir, self.home(name) / "base-src") if self.tiny_dir else None
        pull_base(self.settings(name), self.base, src)

    def start(self, name: str, args: list[str], port: int) -> None:
        log = open(self.home(name) / "process.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen([PLATFORM, *args], env=self.env(name), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.ports[name] = port

    def start_engine(self, name: str) -> str:
        port = free_port()
        self.start(name, ["engine", "--base", self.base, "--host", "127.0.0.1", "--port", str(port)], port)
        return f"http://127.0.0.1:{port}"

    def start_gateway(self, name: str, engine_urls: list[str]) -> str:
        port = free_port()
        args = ["serve", "--base", self.base, "--host", "127.0.0.1", "--port", str(port)]
        for url in engine_urls:
            args += ["--engine-url", url]
        self.start(name, args, port)
        return f"http://127.0.0.1:{port}"

    def wait(self, url: str, name: str, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)[-3000:]}")
            if answers_ok(url, 2.0):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name} not ready at {url}: {self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.home(name) / "process.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def platform(self, name: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run([PLATFORM, *args], env=self.env(name), capture_output=True, text=True, timeout=timeout)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            with _suppress():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(proc.pid, signal.SIGKILL)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError | OSError)
