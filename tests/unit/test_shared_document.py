"""The shared document's compare-and-swap: concurrent writers in separate processes never lose
one another's change, on the local folder and on a real S3 server (moto)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lorafleet.registry.documents import SharedDocument
from lorafleet.registry.storage import LocalStorage, S3Storage
from tests.registry_backends import S3_ENV, moto_s3

pytestmark = pytest.mark.unit

WRITER = """
import sys
from lorafleet.registry.documents import SharedDocument
from lorafleet.registry.storage import storage_from_url
doc = SharedDocument(storage_from_url(sys.argv[1], None, sys.argv[2] or None), "routes/routes.yaml")
for i in range(int(sys.argv[4])):
    line = f"{sys.argv[3]}-{i}"
    doc.update(lambda text: (text + line + "\\n", {"actor": sys.argv[3], "line": line}))
"""


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """(url, endpoint, Storage) of one backend."""
    if request.param == "local":
        yield str(tmp_path / "reg"), "", LocalStorage(tmp_path / "reg")
        return
    with moto_s3() as endpoint:
        yield "s3://lorafleet-test/doc", endpoint, S3Storage("lorafleet-test", "doc", endpoint)


def test_swap_refuses_a_stale_tag(store) -> None:
    _url, _endpoint, storage = store
    assert storage.replace("d", b"one", None) and not storage.replace("d", b"two", None)
    data, tag = storage.get_tagged("d")
    assert data == b"one" and storage.tag("d") == tag
    assert storage.replace("d", b"two", tag) and not storage.replace("d", b"three", tag)
    assert storage.get("d") == b"two"


def test_concurrent_writers_in_three_processes_lose_nothing(store) -> None:
    url, endpoint, storage = store
    env = {**os.environ, **S3_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, endpoint, f"w{k}", "8"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    doc = SharedDocument(storage, "routes/routes.yaml")
    text, _tag = doc.read()
    want = {f"w{k}-{i}" for k in range(3) for i in range(8)}
    assert sorted(text.split()) == sorted(want)
    assert {h["line"] for h in doc.history()} == want and len(doc.history()) == 24
    assert doc.update(lambda _text: None) is None  # a change that changes nothing writes nothing
    assert len(doc.history()) == 24
