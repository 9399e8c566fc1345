"""Per-key rate limits shared by gateway replicas through a real Redis.

Two real gateway processes (``python -m lorafleet.serving.server``), each with a home of its
own (nothing shared but the Redis URL in LORAFLEET_RATE_LIMIT_STORAGE), in front of a small
real HTTP server posing as vLLM (fake_engine.py), hammered at once through the official
openai client: the requests they accept together stay within one tenant's limit, where two
gateways counting apart would accept about twice it. The ones refused are HTTP 429 in
OpenAI's error shape (code rate_limit_exceeded) with a Retry-After. Then Redis is stopped:
the gateways keep serving (fail open to their own per-process limit, still bounded), and
/metrics counts every request the storage could not count in
lorafleet_rate_limit_storage_errors_total. A storage URL that is not redis://, rediss:// or
memory:// stops a gateway at start with one line naming LORAFLEET_RATE_LIMIT_STORAGE.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from lorafleet.engine.process import answers_ok, end_process_group, free_port
from lorafleet.serving.ratelimit import RETRY_S
from lorafleet.serving.tenants import KeysFile
from tests.integration.fake_engine import BASE, FakeEngine
from tests.metrics_text import samples, scrape

REDIS = shutil.which("redis-server")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(REDIS is None, reason="redis-server is installed by `make setup` (scripts/setup.sh)")]

RPS = 5.0  # the tenant's limit: burst 10, then 5 per second
HAMMER_S = 4.0
CLIENTS_PER_GATEWAY = 3
START_S = 30.0
MSG = [{"role": "user", "content": "ok"}]


def wait_for(ready, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, reaped (a zombie would keep its group alive), then whatever is left of its group killed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    end_process_group(proc.pid, grace_s=1)


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.log = folder / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.folder)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or redis_answers(self.port), 10, "redis-server")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def keys(self) -> int:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            found = client.keys("lorafleet:*")
            assert all(b"sha256:" in k for k in found), found  # the key's hash, never the key
            return len(found)
        finally:
            client.close()


class GatewayProcess:
    def __init__(self, home: Path, keys_yaml: str, engine_url: str, storage: str) -> None:
        home.mkdir(parents=True)
        (home / "keys.yaml").write_text(keys_yaml)  # its own copy: no shared path
        self.home, self.port, self.log = home, free_port(), home / "gateway.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFLEET_", "VLLM_"))}
        env.update(LORAFLEET_HOME=str(home), LORAFLEET_RATE_LIMIT_STORAGE=storage)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lorafleet.serving.server", "--base", BASE, "--port", str(self.port),
                 "--engine-url", engine_url], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        wait_for(lambda: self.proc.poll() is not None or answers_ok(f"{self.root_url}/readyz"), START_S, "gateway")
        assert self.proc.poll() is None, self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def client(self, key: str) -> OpenAI:
        return OpenAI(base_url=f"{self.root_url}/v1", api_key=key, max_retries=0, timeout=30)

    def storage_errors(self) -> float:
        found = samples(scrape(self.root_url), "lorafleet_rate_limit_storage_errors_total")
        assert len(found) == 1, found  # exported from the start, at 0
        return found[0].value

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared-limits")
    keys = KeysFile()
    key = keys.add_key("acme")
    keys.tenants["acme"].rate_limit_rps = RPS
    redis = RedisServer(folder).start()
    gateways: list[GatewayProcess] = []
    try:
        with FakeEngine() as engine:
            gateways = [GatewayProcess(folder / f"gateway-{i}", keys.to_yaml(), engine.root_url, redis.url)
                        for i in range(2)]
            for gw in gateways:
                gw.wait_ready()
            yield redis, gateways, key
    finally:
        for gw in gateways:
            gw.stop()
        redis.stop()


class Hammer:
    """Client threads sending chat completions to each gateway as fast as they answer."""

    def __init__(self, gateways: list[GatewayProcess], key: str) -> None:
        self.accepted = [0] * len(gateways)
        self.refused: list[openai.RateLimitError] = []
        self.other: list[BaseException] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, gw.client(key)), daemon=True)
                        for i, gw in enumerate(gateways) for _ in range(CLIENTS_PER_GATEWAY)]

    def _run(self, i: int, client: OpenAI) -> None:
        while not self.stop.is_set():
            try:
                client.chat.completions.create(model=BASE, messages=MSG, max_tokens=1)
                with self.lock:
                    self.accepted[i] += 1
            except openai.RateLimitError as err:
                with self.lock:
                    self.refused.append(err)
            except Exception as err:  # noqa: BLE001 - anything else fails the test below
                with self.lock:
                    self.other.append(err)

    def run(self, seconds: float) -> float:
        started = time.monotonic()
        for t in self.threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a client hung"
        return time.monotonic() - started


def test_two_gateways_share_one_limit_and_refuse_with_openais_429(fleet) -> None:
    _, gateways, key = fleet
    hammer = Hammer(gateways, key)
    elapsed = hammer.run(HAMMER_S)
    assert not hammer.other, hammer.other[:3]
    one_process = 2 * RPS + RPS * elapsed  # what one gateway's own bucket lets through in that time
    total = sum(hammer.accepted)
    # counted apart, the two would let through about 2 x one_process (they are both saturated:
    # each sees far more than its share refused); shared, the sum stays within one limit
    assert total <= 1.3 * one_process, (hammer.accepted, one_process)
    assert total >= 0.6 * RPS * elapsed, (hammer.accepted, elapsed)  # and the limit's share was served
    assert len(hammer.refused) > 2 * one_process, len(hammer.refused)
    assert all(n > 0 for n in hammer.accepted), hammer.accepted  # both gateways served some
    err = hammer.refused[0]
    assert err.status_code == 429
    body = err.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}, body
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
    assert 1 <= int(err.response.headers["retry-after"]) <= 3
    assert all(gw.storage_errors() == 0 for gw in gateways)


def test_with_redis_stopped_the_gateways_keep_serving_and_count_the_errors(fleet) -> None:
    redis, gateways, key = fleet
    redis.stop()
    gw = gateways[0]
    client = gw.client(key)
    served, refused, sent = 0, 0, 20
    started = time.monotonic()
    for _ in range(sent):
        try:
            client.chat.completions.create(model=BASE, messages=MSG, max_tokens=1)
            served += 1
        except openai.RateLimitError as err:
            assert err.response.json()["error"]["code"] == "rate_limit_exceeded"
            refused += 1
    elapsed = time.monotonic() - started
    # fail open to this gateway's own bucket (burst 10, then 5 per second): served, but still bounded
    assert served + refused == sent and served >= 2 * RPS, (served, refused)
    assert served <= 2 * RPS + RPS * elapsed + 1, (served, elapsed)
    assert refused > 0 or elapsed > 1.5, (served, elapsed)
    assert gw.storage_errors() == sent  # every request the storage could not count
    assert "fail open" in gw.log_text()
    assert gw.proc.poll() is None and answers_ok(f"{gw.root_url}/readyz")
    redis.start()  # back on the same port: counted in it again after the retry interval
    time.sleep(RETRY_S + 0.2)
    for g in gateways:
        g.client(key).chat.completions.create(model=BASE, messages=MSG, max_tokens=1)
    assert gw.storage_errors() == sent and gateways[1].storage_errors() == 0
    assert "answers again" in gw.log_text()
    assert redis.keys() == 1  # the key's one moving window, named by its hash


def test_a_bad_storage_url_stops_the_gateway_at_start_naming_the_variable(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFLEET_", "VLLM_"))}
    env.update(LORAFLEET_HOME=str(tmp_path), LORAFLEET_RATE_LIMIT_STORAGE="http://user:s3cret@cache:6379/0")
    done = subprocess.run([sys.executable, "-m", "lorafleet.serving.server", "--base", BASE, "--port",
                           str(free_port()), "--engine-url", "http://127.0.0.1:9"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: LORAFLEET_RATE_LIMIT_STORAGE=" in done.stderr and "unsupported scheme http://" in done.stderr
    assert "s3cret" not in done.stderr
