"""Run a real gateway (uvicorn on a free loopback port) in a thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from lorafleet.serving.engine import free_port
from lorafleet.serving.gateway import Gateway, create_app
from lorafleet.serving.upstream import answers_ok

__all__ = ["GatewayThread"]


class GatewayThread:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.port = free_port()
        config = uvicorn.Config(create_app(gateway), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
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
