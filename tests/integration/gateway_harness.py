"""Run a real gateway (uvicorn on a free loopback port) in a thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from lorafleet.engine.process import free_port
from lorafleet.serving.gateway import Gateway, uvicorn_config
from lorafleet.engine.process import answers_ok

__all__ = ["GatewayThread", "ClientThreads"]


class GatewayThread:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.port = free_port()
        config = uvicorn_config(gateway, "127.0.0.1", self.port, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> GatewayThread:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if answers_ok(f"{self.root_url}/healthz"):
                return self
            time.sleep(0.1)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClientThreads:
    """Background client threads, one ``_run(i)`` each, started on enter and stopped on exit
    (a thread still alive after ``join_timeout_s`` is a hung client: the exit fails)."""

    join_timeout_s: float = 60.0

    def __init__(self, clients: int) -> None:
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        raise NotImplementedError

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.join_timeout_s)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"
