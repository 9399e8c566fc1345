"""Registry backends for tests: the local folder, and S3 on a real moto server on loopback."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lorafleet.engine.process import free_port

__all__ = ["moto_s3", "S3_ENV"]

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _serialized(app):
    """moto checks ``If-None-Match: *`` and then writes, without a lock, on many threads; real
    S3 and MinIO make that conditional write atomic. One request at a time gives moto the same
    guarantee, so the tests exercise the registry's allocation rather than moto's race."""
    lock = threading.Lock()

    def wrapped(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return wrapped


@contextmanager
def moto_s3(bucket: str = "lorafleet-test") -> Iterator[str]:
    """A real S3 server (moto's server mode) on a free loopback port; yields its endpoint URL."""
    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    os.environ.update(S3_ENV)
    port = free_port()
    app = _serialized(DomainDispatcherApplication(create_backend_app))
    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # one line per request would flood test output
            pass

    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    try:
        yield endpoint
    finally:
        server.shutdown()
        thread.join(timeout=10)
