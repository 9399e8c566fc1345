"""A real `mlflow server` for tests: SQLite store and artifacts in its own temp dir, a free port,
its own process group (ended with everything it started)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["mlflow_server"]


@contextmanager
def mlflow_server(root: Path, start_timeout_s: float = 180.0) -> Iterator[str]:
    """Yield the tracking URI of a running server; stop it (and its workers) afterwards."""
    from lorafleet.engine.process import answers_ok, end_process_group, free_port

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]
    log = open(root / "mlflow-server.log", "wb")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while not answers_ok(f"{uri}/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        end_process_group(proc.pid)
        proc.wait(timeout=30)
        log.close()
