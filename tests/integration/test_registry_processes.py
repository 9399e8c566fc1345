"""Registry faults across processes, on the local folder and on a real S3 server:
kill -9 mid-push leaves nothing visible; 8 processes x 5 concurrent pushes never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorafleet.registry.errors import NotFound
from lorafleet.registry.storage import LocalStorage, S3Storage
from lorafleet.registry.store import Registry
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.registry_backends import S3_ENV, moto_s3

PUSHER = """
import sys
from lorafleet.core.settings import get_settings
from lorafleet.registry import open_registry
from lorafleet.registry.bases import BaseStore
settings = get_settings()
reg = open_registry(settings)
base = BaseStore(settings.layout.bases).require(sys.argv[2])
pause_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
if pause_s:  # hold the push after its first file so the test can kill it mid-write
    import time
    put_file = reg.storage.put_file
    def slow_put_file(key, path):
        put_file(key, path)
        time.sleep(pause_s)
    reg.storage.put_file = slow_put_file
for _ in range(int(sys.argv[3])):
    print(reg.push(sys.argv[1], "shared", base).ref, flush=True)
"""


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def backend(request, settings, tmp_path):
    """(env for child processes, a Registry on the same storage)."""
    env = dict(os.environ, LORAFLEET_HOME=str(settings.home))
    if request.param == "local":
        env["LORAFLEET_REGISTRY_URL"] = str(tmp_path / "registry")
        return env, Registry(LocalStorage(tmp_path / "registry"), tmp_path / "cache")
    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = f"p/{tmp_path.name}"
    env.update(S3_ENV, LORAFLEET_REGISTRY_URL=f"s3://lorafleet-test/{prefix}", LORAFLEET_S3_ENDPOINT_URL=endpoint)
    return env, Registry(S3Storage("lorafleet-test", prefix, endpoint), tmp_path / "cache")


@pytest.fixture(scope="module")
def adapter(settings, tiny_base, tmp_path_factory) -> Path:
    return make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp("adapter"), r=4, seed=5)


def _pusher(env: dict, adapter: Path, count: int, pause_s: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUSHER, str(adapter), TINY_BASE, str(count), str(pause_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_push_leaves_no_partial_version(backend, adapter) -> None:
    env, reg = backend
    proc = _pusher(env, adapter, 1, pause_s=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not reg.storage.list("adapters/shared/blobs/"):
        time.sleep(0.1)  # wait until it is mid-write: some files uploaded, no manifest
    assert reg.storage.list("adapters/shared/blobs/"), proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert reg.versions("shared") == [] and reg.names() == []
    with pytest.raises(NotFound):
        reg.resolve("shared")
    # what the killed push wrote is an orphan: gc removes it once the grace period is over
    assert [r for r in reg.gc(set(), orphan_grace_s=0) if "unpublished push" in r] != []
    assert reg.storage.list("adapters/shared/") == []
    ok = _pusher(env, adapter, 1)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert out.split() == ["shared@1"]
    reg.verify("shared@1")


def test_8_processes_x_5_pushes_get_40_distinct_versions(backend, adapter) -> None:
    env, reg = backend
    procs = [_pusher(env, adapter, 5) for _ in range(8)]
    refs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        refs += out.split()
    assert len(refs) == 40 and len(set(refs)) == 40, sorted(refs)
    assert reg.versions("shared") == list(range(1, 41))
    for v in range(1, 41):
        reg.verify(f"shared@{v}")
