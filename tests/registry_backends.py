"""Registry backends for tests: the local folder, and S3 on a real moto server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from lorafleet.serving.engine import free_port

__all__ = ["moto_s3", "S3_ENV"]

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_s3(bucket: str = "lorafleet-test") -> Iterator[str]:
    """A real S3 server (moto's server mode) on a free loopback port; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.update(S3_ENV)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    try:
        yield endpoint
    finally:
        server.stop()
