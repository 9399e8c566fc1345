"""Registry backends for tests: the local folder, and S3 on a real moto server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lorafleet.engine.process import answers_ok, free_port

__all__ = ["moto_s3", "S3_ENV"]

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _serialized(app, delay_s: float = 0.0):
    """moto checks ``If-None-Match: *`` and then writes, without a lock, on many threads; real
    S3 and MinIO make that conditional write atomic. One request at a time gives moto the same
    guarantee, so the tests exercise the registry's allocation rather than moto's race.
    ``delay_s`` before each request (outside the lock, so requests in flight together overlap
    it, as on a real store) stands for a remote store's round trip (benchmarks)."""
    lock = threading.Lock()

    def wrapped(environ, start_response):
        if delay_s:
            time.sleep(delay_s)
        with lock:
            return list(app(environ, start_response))

    return wrapped


def _serve(port: int, delay_s: float = 0.0) -> None:
    """The server process: moto's app, one request at a time, on loopback ``port``."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # one line per request would flood test output
            pass

    app = _serialized(DomainDispatcherApplication(create_backend_app), delay_s)
    make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler).serve_forever()


@contextmanager
def moto_s3(bucket: str = "lorafleet-test", delay_s: float = 0.0) -> Iterator[str]:
    """A real S3 server (moto's server mode) in its own process on a free loopback port; yields its
    endpoint URL. Its own process, because moto keeps its buckets in module globals: two servers in
    one process would share every bucket (one test module's versions showing up in the next).
    ``delay_s``: added to every request, as a remote store's round trip."""
    import boto3

    os.environ.update(S3_ENV)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # its output goes to a file, never a pipe: a pipe nobody reads would block the server once full
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([sys.executable, "-c", f"from tests.registry_backends import _serve; _serve({port}, {delay_s!r})"],
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, **S3_ENV},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not answers_ok(f"{endpoint}/moto-api/", 1.0):
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the moto S3 server exited ({proc.returncode}): {log.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the moto S3 server did not answer within 60 s")
            time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
