"""Many machines, tested on one: a real two-node Ray cluster started with the Ray CLI (a head
node and a worker node, each its own raylet with its own CPU and custom resource), token
authentication on, and `platform train --address` (the real CLI, in its own process) running a
2-worker Ray Train job across both nodes and pushing the adapter to a real S3 server.

Only the processes this test started are stopped (found by the cluster's own temp folder):
`ray stop` would also kill every other Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lorafleet.engine.process import free_port
from lorafleet.training.job import RAY_NODE_ENV
from tests.conftest import TINY_BASE
from tests.registry_backends import S3_ENV, moto_s3

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"
BUCKET = "lorafleet-multinode"


class LocalRayCluster:
    """Ray nodes started with ``ray start`` on this machine, each with its own temp folder under ``root``."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.address: str | None = None
        self.nodes = 0

    def _start(self, args: list[str], name: str) -> None:
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}", "--min-worker-port=0", "--max-worker-port=0"]
        cmd = [str(BIN / "ray"), "start", *args, *ports, "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               f"--temp-dir={self.root / name}"]
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        self.nodes += 1

    def start_head(self, resources: dict[str, float], num_cpus: int = 1) -> str:
        port = free_port()
        self._start(["--head", f"--port={port}", f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}",
                     "--include-dashboard=false", f"--ray-client-server-port={free_port()}"], "head")
        self.address = f"127.0.0.1:{port}"
        return self.address

    def add_node(self, resources: dict[str, float], num_cpus: int = 1) -> None:
        assert self.address, "start the head first"
        self._start([f"--address={self.address}", f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}"],
                    f"node{self.nodes}")

    def pids(self) -> list[int]:
        """Every live process whose command line names this cluster's temp folder."""
        mark, out = str(self.root).encode(), []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if mark in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                continue
        return out

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every process of this cluster, then SIGKILL what is left."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while pids and time.monotonic() < deadline:
                time.sleep(0.3)
                pids = self.pids()
            if not pids:
                return


def _nodes(address: str, env: dict[str, str]) -> list[dict]:
    """ray.nodes() as seen by a driver that joins the cluster (in its own process)."""
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'resources': n['Resources']} "
            "for n in ray.nodes()])); ray.shutdown()") % address
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def ray_env() -> dict[str, str]:
    """The environment of every Ray process here: the fleet's Ray node environment, and token
    authentication with a token of this test's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_NODE_ENV)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_DEDUP_LOGS="0",
               RAY_USAGE_STATS_ENABLED="0")
    return env


@pytest.fixture
def cluster(ray_env):
    root = Path(tempfile.mkdtemp(prefix="lfray-", dir="/tmp"))  # short: Ray's unix socket paths must fit
    c = LocalRayCluster(root, ray_env)
    try:
        t0 = time.perf_counter()
        c.start_head({"head_node": 1})
        c.add_node({"worker_node": 1})
        print(f"\nray start: head + 1 worker node in {time.perf_counter() - t0:.0f}s at {c.address}")
        yield c
    finally:
        c.stop()
        left = c.pids()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes of this test still alive: {left}"


def test_train_on_two_node_cluster_pushes_to_s3(settings, tiny_base, cluster, ray_env, monkeypatch):
    from lorafleet.core.settings import get_settings
    from lorafleet.registry import open_registry

    nodes = [n for n in _nodes(cluster.address, ray_env) if n["alive"]]
    assert len(nodes) == 2, nodes
    by_role = {("head" if "head_node" in n["resources"] else "worker"): n["id"] for n in nodes}
    assert set(by_role) == {"head", "worker"} and all(n["resources"]["CPU"] == 1 for n in nodes)

    sets = [f"base={TINY_BASE}", "output_name=tiny-multinode", "workers=2", "cpus_per_worker=1", "max_steps=4",
            "batch_size=4", "logging_steps=1", "checkpoint_every_steps=2", "bf16_autocast=false", "warmup_ratio=0",
            # no held-out or golden rows: no evaluation engine, so no gate thresholds either
            "data.eval=null", "data.golden=null", "gate.min_json_parse_rate=null",
            "gate.min_schema_pass_rate=null", "gate.min_field_match={}", "eval.suites={}", "gate.suites={}"]
    with moto_s3(BUCKET) as endpoint:
        registry_env = {**S3_ENV, "LORAFLEET_HOME": str(settings.home),
                        "LORAFLEET_REGISTRY_URL": f"s3://{BUCKET}/registry", "LORAFLEET_S3_ENDPOINT_URL": endpoint}
        env = {**ray_env, **registry_env, "COLUMNS": "200"}
        t1 = time.perf_counter()
        train = subprocess.run([str(BIN / "platform"), "train", str(EXAMPLE), *[x for kv in sets for x in ("--set", kv)],
                                "--address", cluster.address], env=env, capture_output=True, text=True, timeout=420)
        out = train.stdout + train.stderr
        assert train.returncode == 0, out[-6000:]
        print(f"platform train --address: {time.perf_counter() - t1:.0f}s; its output ends:\n"
              + "\n".join(train.stdout.splitlines()[-8:]))
        assert "2 workers ran on 2 Ray nodes" in out and "pushed tiny-multinode@1" in out, out[-4000:]

        verify = subprocess.run([str(BIN / "platform"), "registry", "verify", "tiny-multinode@1"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0 and "tiny-multinode@1:" in verify.stdout, verify.stdout + verify.stderr

        for key, value in registry_env.items():
            monkeypatch.setenv(key, value)
        manifest = open_registry(get_settings()).verify("tiny-multinode@1")
        import boto3

        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
            Bucket=BUCKET, Prefix="registry/")["Contents"]]
    # the version lives on S3 (its manifest and blobs under the prefix), not in the home's registry folder
    assert "registry/adapters/tiny-multinode/versions/00000001.json" in keys, keys
    assert not (settings.layout.registry / "adapters" / "tiny-multinode").exists()

    # one Ray Train worker on each node: the ranks' node ids are the cluster's two nodes
    workers = manifest.training_metrics["workers"]
    assert [w["rank"] for w in workers] == [0, 1], workers
    assert {w["node_id"] for w in workers} == set(by_role.values()), (workers, by_role)
    assert manifest.training_metrics["global_step"] == 4 and manifest.training_metrics["attempts"] == 1
    assert manifest.ray_run and manifest.base.name == TINY_BASE and manifest.gate["passed"] is True
