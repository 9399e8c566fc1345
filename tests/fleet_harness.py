"""Processes of a fleet on one machine, each with its own LORAFLEET_HOME (as separate machines
would be): engines (`platform engine`) and gateways (`platform serve`) over one S3 registry, and
`platform` commands run from any home. Used by tests/integration/test_fleet.py and
benchmarks/fleet_bench.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from lorafleet.core.settings import Settings
from lorafleet.platform import topology
from lorafleet.engine.process import answers_ok, free_port
from lorafleet.platform.base_pull import pull_base
from tests.conftest import TINY_BASE
from tests.registry_backends import S3_ENV

__all__ = ["Fleet", "BUCKET", "PREFIX", "ENGINE_KEY", "PLATFORM"]

BUCKET, PREFIX = "lorafleet-fleet", "fleet"
ENGINE_KEY = "engine-secret-for-tests"
PLATFORM = str(Path(sys.executable).with_name("platform"))


class Fleet:
    """Engines and gateways started from :mod:`lorafleet.platform.topology` (the command lines and
    environment the Kubernetes manifests are rendered from), on loopback, one home each; a Redis
    for the shared rate limits; an admin key in every gateway's own copy of the keys file."""

    def __init__(self, root: Path, endpoint: str, tiny_dir: Path | None, base: str = TINY_BASE) -> None:
        from lorafleet.serving.tenants import KeysFile, hash_key, new_key

        self.root, self.endpoint, self.tiny_dir, self.base = root, endpoint, tiny_dir, base
        self.procs: dict[str, subprocess.Popen] = {}
        self._engines_started = 0
        self.extra_env: dict[str, str] = {}  # for every process (e.g. a larger max LoRA rank)
        self.ports: dict[str, int] = {}
        self.admin_key = new_key()
        self._keys_text = KeysFile(admin_keys=[hash_key(self.admin_key)]).to_yaml()
        self.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        self.topology = topology.Fleet(registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=endpoint,
                                       redis_url=self.redis_url, engine_urls=[], base=base,
                                       gateway_host="127.0.0.1", engine_host="127.0.0.1", redis_host="127.0.0.1")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def home(self, name: str) -> Path:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        return home

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """A CLI's environment on machine ``name`` (what an operator would export there)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFLEET_", "VLLM_"))}
        env.update(S3_ENV, LORAFLEET_HOME=str(self.home(name)), LORAFLEET_REGISTRY_URL=f"s3://{BUCKET}/{PREFIX}",
                   LORAFLEET_S3_ENDPOINT_URL=self.endpoint, LORAFLEET_ROUTES_SOURCE="registry",
                   LORAFLEET_ENGINE_API_KEY=ENGINE_KEY, LORAFLEET_DEFAULT_BASE=self.base,
                   LORAFLEET_ENGINE_MAX_LORA_RANK="16", LORAFLEET_ENGINE_KVCACHE_GIB="1")
        env.update(self.extra_env, **extra)
        return env

    def settings(self, name: str) -> Settings:
        return Settings(home=self.home(name), registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=self.endpoint,
                        routes_source="registry", default_base=self.base)

    def pull_base(self, name: str) -> None:
        """This machine's own copy of the base (converted there, nothing shared)."""
        src = shutil.copytree(self.tiny_dir, self.home(name) / "base-src") if self.tiny_dir else None
        pull_base(self.settings(name), self.base, src)

    def _run(self, name: str, process: topology.Process) -> None:
        """Start a topology process: its command and env, its secrets resolved to the test's values."""
        secrets = {"AWS_ACCESS_KEY_ID": S3_ENV["AWS_ACCESS_KEY_ID"],
                   "AWS_SECRET_ACCESS_KEY": S3_ENV["AWS_SECRET_ACCESS_KEY"], "LORAFLEET_ENGINE_API_KEY": ENGINE_KEY}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFLEET_", "VLLM_"))}
        env.update(AWS_DEFAULT_REGION=S3_ENV["AWS_DEFAULT_REGION"], LORAFLEET_ENGINE_MAX_LORA_RANK="16",
                   LORAFLEET_ENGINE_KVCACHE_GIB="1")
        env.update(process.env, **{var: secrets[var] for var in process.secret_env})
        env.update(self.extra_env)
        program = {"platform": PLATFORM}.get(process.command[0], process.command[0])
        log = open(self.home(name) / "process.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen([program, *process.command[1:]], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.ports[name] = process.port

    def start_redis(self) -> None:
        self._run("redis", topology.redis(self.topology))
        port = self.ports["redis"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start: {self.log('redis')[-2000:]}")

    def start_engine(self, name: str) -> str:
        """An engine on "its own machine": its own home, and its vLLM worker's OpenMP threads on one
        core of this machine's, in turn (vLLM's VLLM_CPU_OMP_THREADS_BIND). Left to vLLM's default,
        every engine binds a thread to every core, and engines sharing cores stall each other's
        forward passes at OpenMP barriers: worker steps of 60-110 s seen with three on two cores."""
        port = free_port()
        cores = os.sched_getaffinity(0)
        core = sorted(cores)[self._engines_started % len(cores)]
        self._engines_started += 1
        process = topology.engine(replace(self.topology, home=str(self.home(name))), port)
        self._run(name, replace(process, env={**process.env, "VLLM_CPU_OMP_THREADS_BIND": str(core)}))
        return f"http://127.0.0.1:{port}"

    def start_gateway(self, name: str, engine_urls: list[str]) -> str:
        if "redis" not in self.procs:
            self.start_redis()
        home = self.home(name)
        keys = home / "etc" / "keys" / "keys.yaml"  # this machine's copy of the keys Secret
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(self._keys_text)
        port = free_port()
        fleet = replace(self.topology, home=str(home), engine_urls=engine_urls, keys_file=str(keys))
        self._run(name, topology.gateway(fleet, port))
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
            with contextlib.suppress(OSError):  # ProcessLookupError: it is gone already
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
