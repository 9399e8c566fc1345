"""Run a real Prometheus (Debian's `prometheus` binary) on a free loopback port, for tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from lorafleet.engine.process import free_port
from lorafleet.engine.process import answers_ok

__all__ = ["PROMETHEUS", "PrometheusServer"]

PROMETHEUS = shutil.which("prometheus")


class PrometheusServer:
    """One Prometheus with the given config (a mapping), its data in ``folder``."""

    def __init__(self, config: dict, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.config_path = folder / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.targets = sum(len(sc.get("targets", [])) for job in config.get("scrape_configs", [])
                           for sc in job.get("static_configs", []))
        self.log_path = folder / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        if PROMETHEUS is None:
            raise RuntimeError("prometheus is not installed (scripts/setup.sh installs Debian's package)")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited (code {self.proc.returncode}):\n{self.log_tail()}")
            if answers_ok(f"{self.url}/-/ready"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, max_bytes: int = 4000) -> str:
        return self.log_path.read_bytes()[-max_bytes:].decode("utf-8", "replace") if self.log_path.exists() else ""

    def api(self, path: str, **params) -> dict | list:
        """GET /api/v1/<path>; the ``data`` of a successful answer."""
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {r.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        return data["result"]

    def wait_scraped_after(self, t: float, timeout_s: float = 20.0) -> None:
        """Wait until every target has been scraped by a scrape that began after ``t`` (epoch s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up = self.query("timestamp(up)")
            if len(up) == self.targets and all(float(s["value"][1]) > t for s in up):
                return
            time.sleep(0.2)
        raise AssertionError(f"targets not scraped in {timeout_s}s: {self.api('targets')}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
