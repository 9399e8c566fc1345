"""Fault injection (issue #9) with the real components, each a clear pass or fail:

- kill -9 of a supervised vLLM engine under load: quick OpenAI-shaped 503s while it is down,
  the supervisor restarts it, traffic recovers through the same gateway, adapters reload;
- 20 promote/rollback cycles through the Promoter under load: zero failed requests;
- the routes file corrupted under load (garbage, truncated, emptied, unknown version): the
  last good routes keep serving, the rejection is reported, a good file then takes effect;
- one flipped byte in a stored adapter: the canary is refused at load, stable keeps serving;
- registry push on a read-only and on a full filesystem (a real tmpfs): a clean error,
  nothing half-written, the next push gets the next number.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from lorafleet.platform.control.promotion import Promoter
from lorafleet.platform.control.routes_edit import history
from lorafleet.registry.errors import IntegrityError, RegistryError
from lorafleet.registry.storage import LocalStorage
from lorafleet.registry.store import Registry
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import ClientThreads, GatewayThread

MSG = [{"role": "user", "content": "Tell me about the sea."}]
GATEWAY_TIMEOUT_S = 15.0  # the gateway's upstream timeout in these tests: no request may take longer
QUICK_503_S = 5.0  # an engine that is down is answered at once (2 shared cores: generous)


# -- helpers ---------------------------------------------------------------------------------
@dataclass
class Rec:
    """One request's outcome: kind is ok | http | stream_error | timeout | connection | exception."""

    model: str
    started: float
    duration_s: float
    kind: str
    status: int | None = None
    version: str | None = None
    variant: str | None = None
    error: dict | None = None
    retry_after: str | None = None
    detail: str = ""


class Load(ClientThreads):
    """Client threads sending chat requests with the official openai client until stopped (1 in 3
    streamed); every outcome is recorded with its start time and duration."""

    join_timeout_s = GATEWAY_TIMEOUT_S * 4

    def __init__(self, url: str, models: list[str], clients: int = 6, max_tokens: int = 4) -> None:
        super().__init__(clients)
        self.url, self.models, self.max_tokens = url, models, max_tokens
        self.records: list[Rec] = []
        self._lock = threading.Lock()

    def _one(self, client: OpenAI, model: str, user: str, stream: bool) -> Rec:
        started = time.monotonic()
        rec = Rec(model, started, 0.0, "ok", 200)
        try:
            if stream:
                s = client.chat.completions.create(model=model, messages=MSG, max_tokens=self.max_tokens,
                                                   stream=True, user=user)
                headers = s.response.headers
                chunks = list(s)
                if not chunks:
                    rec.kind, rec.detail = "exception", "empty stream"
            else:
                raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG,
                                                                        max_tokens=self.max_tokens, user=user)
                raw.parse()
                headers = raw.headers
            rec.version, rec.variant = headers.get("x-lorafleet-version"), headers.get("x-lorafleet-variant")
        except openai.APIStatusError as exc:
            rec.kind, rec.status, rec.detail = "http", exc.status_code, exc.message
            rec.retry_after = exc.response.headers.get("retry-after")
            with contextlib.suppress(ValueError):
                rec.error = exc.response.json().get("error")
        except openai.APITimeoutError as exc:
            rec.kind, rec.status, rec.detail = "timeout", None, str(exc)
        except openai.APIConnectionError as exc:
            rec.kind, rec.status, rec.detail = "connection", None, str(exc)
        except openai.APIError as exc:  # an error event inside a stream that had begun
            rec.kind, rec.status, rec.detail = "stream_error", None, exc.message
            rec.error = exc.body if isinstance(exc.body, dict) else None
        except Exception as exc:  # noqa: BLE001 - every failure is recorded
            rec.kind, rec.status, rec.detail = "exception", None, f"{type(exc).__name__}: {exc}"
        rec.duration_s = time.monotonic() - started
        return rec

    def _run(self, i: int) -> None:
        # a client-side timeout well past the gateway's: a hang shows up as kind "timeout"
        client = OpenAI(base_url=self.url, api_key="unused", max_retries=0, timeout=GATEWAY_TIMEOUT_S * 3)
        n = 0
        while not self.stop.is_set():
            n += 1
            rec = self._one(client, self.models[n % len(self.models)], f"load-{i}-{n}", stream=n % 3 == 0)
            with self._lock:
                self.records.append(rec)
            if rec.kind != "ok":
                time.sleep(0.25)  # back off a little, as a client would: 2 shared cores also restart the engine

    def failures(self) -> list[Rec]:
        return [r for r in self.records if r.kind != "ok"]



def wait_for(predicate, timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not met within {timeout_s:.0f}s")


def write_routes(path: Path, routes: dict) -> None:
    RoutesFile.from_mapping({"routes": routes}).save(path)


def replace_bytes(path: Path, data: bytes) -> None:
    """Swap the file's content in one step (so the watcher sees exactly this content)."""
    tmp = path.with_name(f".{path.name}.fault")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def admin_routes(gw: GatewayThread) -> dict:
    return httpx.get(f"{gw.root_url}/admin/routes", timeout=10).json()


def applied(gw: GatewayThread, route: str, stable: str, canary: str | None = None) -> bool:
    current = admin_routes(gw)["routes"].get(route)
    return (current is not None and current["stable"] == stable
            and (current.get("canary") or {}).get("version") == canary)


def metric(gw: GatewayThread, name: str, **labels: str) -> float:
    text = httpx.get(f"{gw.root_url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def engine_models(root_url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{root_url}/v1/models", timeout=10).json()["data"]}


def summary(records: list[Rec], limit: int = 5) -> list[str]:
    return [f"{r.model} {r.kind} {r.status} {r.duration_s:.2f}s {r.detail[:160]}" for r in records[:limit]]


@pytest.fixture(scope="module")
def versions(settings, tiny_base, tmp_path_factory) -> list[str]:
    """faults@1 and faults@2: two distinct random adapters in the session registry."""
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    refs = []
    for seed in (11, 12):
        src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp(f"faults{seed}"),
                                r=8, scale=40.0, seed=seed)
        refs.append(reg.push(src, "faults", tiny_base).ref)
    return refs


# -- 1. kill -9 of the engine ------------------------------------------------------------------
def _group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as 'pid name'."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[2]) == pgid and rest[0] != "Z":
                members.append(f"{proc.name} {name}")
    return members


def test_engine_kill_9_under_load_recovers_through_the_same_gateway(settings, versions, tmp_path) -> None:
    """Its own supervised engine (not the session one): killed with SIGKILL while clients send."""
    from lorafleet.engine.vllm import EngineConfig, LocalEngine
    from lorafleet.engine.supervisor import EngineSupervisor

    v1 = versions[0]
    config = EngineConfig.from_settings(settings, settings.layout.base(TINY_BASE), TINY_BASE,
                                        log_path=tmp_path / "vllm.log", max_lora_rank=64)
    supervisor = EngineSupervisor(LocalEngine(config), min_backoff_s=0.5, check_interval_s=0.2)
    supervisor.start()
    eng = supervisor.engine
    try:
        routes = tmp_path / "routes.yaml"
        write_routes(routes, {"faults": {"stable": v1}})
        gateway = build_gateway(settings, TINY_BASE, [eng.root_url], routes, upstream_timeout_s=GATEWAY_TIMEOUT_S)
        pool_engine = gateway.pool.engines[0]
        with GatewayThread(gateway) as gw:
            client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(model="faults", messages=MSG, max_tokens=4)
            assert raw.headers["x-lorafleet-version"] == v1  # loaded before the crash
            assert v1 in engine_models(eng.root_url)
            loads_before = pool_engine.loads_total
            old_pid = eng.proc.pid
            assert len(_group_members(old_pid)) >= 2, _group_members(old_pid)  # the API server, its engine core
            with Load(gw.url, ["faults", TINY_BASE]) as load:
                time.sleep(2)
                killed_at = time.monotonic()
                os.kill(old_pid, signal.SIGKILL)
                wait_for(lambda: not pool_engine.healthy, 10, "the gateway notices the engine is down")
                time.sleep(1)  # some requests while it is known down
                wait_for(lambda: supervisor.restarts >= 1 and pool_engine.healthy, 300,
                         "the supervisor restarts the engine and the gateway sees it")
                recovered_at = time.monotonic()
                time.sleep(3)
            recs = load.records
        print(f"\nkill -9: engine down for {recovered_at - killed_at:.1f}s, {len(recs)} requests, "
              f"{sum(r.kind == 'http' and r.status == 503 for r in recs)} x 503, "
              f"{sum(r.kind == 'stream_error' for r in recs)} streams cut, restarts={supervisor.restarts}")
        before = [r for r in recs if r.started < killed_at]
        during = [r for r in recs if killed_at <= r.started < recovered_at]
        after = [r for r in recs if r.started >= recovered_at]
        assert before and during and after
        # nothing hangs: every request ended within the gateway's timeout, 503s at once
        slowest = max(recs, key=lambda r: r.duration_s)
        assert slowest.duration_s < GATEWAY_TIMEOUT_S, summary([slowest])
        assert [r for r in recs if r.kind in ("timeout", "connection", "exception")] == []
        unavailable = [r for r in recs if r.kind == "http"]
        assert unavailable and all(r.status == 503 for r in unavailable), summary(unavailable)
        assert max(r.duration_s for r in unavailable) < QUICK_503_S
        for r in unavailable:  # OpenAI's error shape, with a Retry-After
            assert r.error is not None and set(r.error) == {"message", "type", "param", "code"}, r.error
            assert r.error["code"] == "engine_unavailable" and int(r.retry_after) > 0, r.error
        for r in (r for r in recs if r.kind == "stream_error"):  # a stream cut by the kill says so in-band
            assert r.started < killed_at + 2 and (r.error or {}).get("code") == "engine_unavailable", r
        # requests that began before the kill failed only if they were still in flight at it
        cut = [r for r in before if r.kind != "ok"]
        assert all(r.started + r.duration_s >= killed_at for r in cut), summary(cut)
        # traffic recovered on the same gateway; the adapter was reloaded on demand
        assert after and [r for r in after if r.kind != "ok"] == [], summary([r for r in after if r.kind != "ok"])
        assert {r.version for r in after} == {v1, "base"}
        assert supervisor.restarts == 1 and eng.proc.pid != old_pid
        assert pool_engine.loads_total > loads_before
        assert v1 in engine_models(eng.root_url)
        # the killed engine left no process behind (its engine-core child included)
        assert _group_members(old_pid) == []
    except BaseException:
        print(eng.log_tail(6000))
        raise
    finally:
        supervisor.stop()


# -- 2. promote / rollback cycles ------------------------------------------------------------
def test_20_promote_rollback_cycles_under_load_fail_no_request(settings, engine, versions) -> None:
    v1, v2 = versions
    route = "faults-cycles"
    routes_file = settings.layout.routes_file
    promoter = Promoter(settings, TINY_BASE, actor="fault-test")
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], routes_file)
    with GatewayThread(gateway) as gw:

        def step(expected_stable: str, expected_canary: str | None) -> None:
            parsed = RoutesFile.load(routes_file).routes[route]  # the file parses after every step
            assert parsed.stable == expected_stable
            assert (parsed.canary.version if parsed.canary else None) == expected_canary
            wait_for(lambda: applied(gw, route, expected_stable, expected_canary), 5, "the change is applied")
            time.sleep(0.3)

        promoter.canary(v1, 50, route=route, reason="set up")  # a new route: base stable, v1 canary
        promoter.full(route, "set up")
        step(v1, None)
        with Load(gw.url, [route, route, TINY_BASE]) as load:
            for cycle in range(20):
                if cycle % 2 == 0:  # canary 5% -> rollback
                    promoter.canary(v2, 5, route=route, reason=f"cycle {cycle}")
                    step(v1, v2)
                else:  # canary -> full -> rollback to the previous stable
                    promoter.canary(v2, 50, route=route, reason=f"cycle {cycle}")
                    step(v1, v2)
                    promoter.full(route, f"cycle {cycle}")
                    step(v2, None)
                promoter.rollback(route, f"cycle {cycle}")
                step(v1, None)
        recs = load.records
    print(f"\n20 promote/rollback cycles: {len(recs)} requests, "
          f"{len(load.failures())} failed, versions seen {sorted({r.version for r in recs})}")
    assert load.failures() == [], summary(load.failures())
    assert len(recs) > 200
    assert {v1, v2, "base"} <= {r.version for r in recs}
    kinds = [e["kind"] for e in history(routes_file, route)]
    assert kinds.count("rollback") == 20 and kinds.count("full") == 11 and kinds.count("canary") == 21


# -- 3. the routes file corrupted ---------------------------------------------------------------
def test_corrupted_routes_file_under_load_keeps_the_last_good_routes(settings, engine, versions, tmp_path,
                                                                      caplog) -> None:
    caplog.set_level(logging.ERROR, logger="lorafleet.gateway")
    v1, v2 = versions
    route = "faults-corrupt"
    path = tmp_path / "routes.yaml"
    write_routes(path, {route: {"stable": v1}})
    good = path.read_text()
    flow = f"routes:\n  {route}:\n    stable: {v1}\n    canary: {{version: {v2}, weight: 5}}\n"
    corruptions = {  # name -> (bytes, a piece of the reason the gateway must report)
        "garbage bytes": (b"\xff\xfe\x00\x9c" + bytes(range(256)) * 4, "decode"),
        "truncated YAML": (flow[: flow.index("weight")].encode(), "not valid YAML"),
        "truncated to nothing": (b"", "empty"),
        "nonexistent version": (good.replace(v1, "faults@999").encode(), "faults@999"),
    }
    for name in ("garbage bytes", "truncated YAML"):  # not even YAML; the other two only the gateway refuses
        with pytest.raises(ValueError):
            RoutesFile.parse_text(corruptions[name][0].decode("utf-8"), name)

    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], path)
    with GatewayThread(gateway) as gw:
        wait_for(lambda: applied(gw, route, v1), 5, "the first routes are applied")
        with Load(gw.url, [route]) as load:
            time.sleep(1)
            for i, (name, (data, reason)) in enumerate(corruptions.items(), start=1):
                replace_bytes(path, data)
                wait_for(lambda i=i: metric(gw, "lorafleet_routes_reloads_total", result="rejected") >= i, 5,
                         f"{name}: the gateway rejects the file")
                error = admin_routes(gw)["last_error"]
                assert error is not None and reason in error, (name, error)
                assert applied(gw, route, v1), (name, admin_routes(gw))
                time.sleep(1)  # traffic on the corrupted file
            fixed_at = time.monotonic()
            write_routes(path, {route: {"stable": v2}})
            wait_for(lambda: applied(gw, route, v2), 5, "a good file written afterwards takes effect")
            applied_at = time.monotonic()
            time.sleep(1.5)
        assert admin_routes(gw)["last_error"] is None
        assert metric(gw, "lorafleet_routes_reloads_total", result="rejected") == len(corruptions)
    recs = load.records
    print(f"\ncorrupted routes file: {len(recs)} requests, {len(load.failures())} failed")
    assert load.failures() == [], summary(load.failures())
    # the last good routes kept serving: every request answered before the good file was written (one that
    # started just before it can wait in the gateway's queue on a slow machine and be routed after it)
    assert {r.version for r in recs if r.started + r.duration_s < fixed_at} == {v1}
    assert {r.version for r in recs if r.started > applied_at} == {v2}
    logged = [r.getMessage() for r in caplog.records if "routes file rejected" in r.getMessage()]
    assert len(logged) >= len(corruptions), logged


# -- 4. a flipped byte in a stored adapter ------------------------------------------------------
def test_flipped_byte_canary_is_refused_at_load_while_stable_serves(settings, tiny_base, engine, versions,
                                                                    tmp_path, caplog) -> None:
    from lorafleet.registry import open_registry

    caplog.set_level(logging.ERROR, logger="lorafleet.gateway")
    v1 = versions[0]
    reg = open_registry(settings)
    src = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "flip", r=8, scale=40.0, seed=13)
    bad = reg.push(src, "faults-flip", tiny_base).ref
    manifest = reg.resolve(bad)
    weights = reg.storage.local_path(f"adapters/faults-flip/blobs/{manifest.blob}/adapter_model.safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte, in the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="adapter_model.safetensors"):
        reg.verify(bad)
    routes_before = settings.layout.routes_file.read_bytes() if settings.layout.routes_file.exists() else None
    with pytest.raises(IntegrityError, match="corrupted"):  # promote refuses it outright
        Promoter(settings, TINY_BASE, actor="fault-test").canary(bad, 50, route="faults-flip")
    assert (settings.layout.routes_file.read_bytes() if settings.layout.routes_file.exists() else None) == routes_before

    # written by hand (as an operator could), the canary reaches the gateway
    path = tmp_path / "routes.yaml"
    write_routes(path, {"faults-flip": {"stable": v1, "canary": {"version": bad, "weight": 50}}})
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], path)
    with GatewayThread(gateway) as gw:
        with Load(gw.url, ["faults-flip"]) as load:
            time.sleep(5)
        # the version itself, asked for by an admin: a clear OpenAI error that says retrying cannot help
        # (not a hang, not a 503 with Retry-After)
        r = httpx.post(f"{gw.url}/chat/completions", timeout=30, headers={"X-Lorafleet-Version": bad},
                       json={"model": "faults-flip", "messages": MSG, "max_tokens": 4})
        assert r.status_code == 500 and "retry-after" not in r.headers, r.text
        assert r.headers["x-should-retry"] == "false"
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "adapter_corrupted"
        assert bad in err["message"] and "corrupted" in err["message"], err
        failed_loads = metric(gw, "lorafleet_adapter_loads_total", result="failed")
        fallbacks = metric(gw, "lorafleet_canary_fallbacks_total", route="faults-flip", version=bad)
    recs = load.records
    print(f"\nflipped byte: {len(recs)} requests, {len(load.failures())} failed, {failed_loads:.0f} refused loads")
    assert load.failures() == [], summary(load.failures())
    assert len(recs) > 5  # how many fit in the 5 s depends on the machine's load
    assert {r.version for r in recs} == {v1} and {r.variant for r in recs} == {"stable"}
    # the canary's first request tried it and was refused; the rest of its share went to stable
    # without re-verifying it (failed_load_retry_s), each counted as a fallback for canary analysis;
    # the pinned admin request tried it once more
    assert 2 <= failed_loads <= 6 + 1, failed_loads  # at most the clients that raced the first try, + pinned
    assert fallbacks >= 2, fallbacks
    refused = [r.getMessage() for r in caplog.records if "canary failed to load" in r.getMessage()]
    assert refused and bad in refused[0] and "does not match its sha256 (corrupted)" in refused[0], refused[:1]
    assert bad not in engine_models(engine.root_url)  # the corrupted bytes never reached vLLM


# -- 5. registry push on a read-only and on a full filesystem -------------------------------------
@pytest.fixture(scope="module")
def small_adapter(settings, tiny_base, tmp_path_factory) -> Path:
    return make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path_factory.mktemp("small-adapter"),
                             r=8, seed=21)


@pytest.fixture()
def tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted for the test (we run as root), or (None, why) where mounting is impossible."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        yield None, (proc.stderr or proc.stdout).strip() or f"mount exited {proc.returncode}"
        return
    try:
        yield mnt, ""
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount(mnt: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True, capture_output=True)


def _cli_push(settings, registry_root: Path, adapter: Path, name: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LORAFLEET_HOME=str(settings.home), LORAFLEET_REGISTRY_URL=str(registry_root))
    return subprocess.run([sys.executable, "-m", "lorafleet.platform.cli", "registry", "push", str(adapter),
                           "--name", name, "--base", TINY_BASE], env=env, capture_output=True, text=True,
                          timeout=120)


def _files(root: Path) -> list[str]:
    """Every file under the registry root, hidden temporaries included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_registry_push_on_a_read_only_filesystem_is_a_clean_error(settings, tiny_base, small_adapter, tmpfs,
                                                                 tmp_path) -> None:
    mnt, why = tmpfs
    if mnt is None:
        pytest.skip(f"cannot mount a tmpfs to remount read-only ({why}); chmod does not stop root")
    root = mnt / "registry"
    reg = Registry(LocalStorage(root), tmp_path / "cache")
    assert reg.push(small_adapter, "ro", tiny_base).ref == "ro@1"
    before = _files(root)
    _remount(mnt, "ro")
    try:
        with pytest.raises(OSError):
            (root / "probe").write_text("x")  # root really cannot write there
        with pytest.raises(RegistryError, match="Read-only file system") as info:
            reg.push(small_adapter, "ro", tiny_base)
        assert "\n" not in str(info.value)
        cli = _cli_push(settings, root, small_adapter, "ro")
        assert cli.returncode == 2, cli.stderr[-2000:]
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Read-only file system" in lines[0], lines
        assert _files(root) == before and reg.versions("ro") == [1]
        reg.verify("ro@1")
    finally:
        _remount(mnt, "rw")
    m = reg.push(small_adapter, "ro", tiny_base)
    assert m.ref == "ro@2"
    reg.verify("ro@2")
    assert sorted(set(_files(root)) - set(before)) == sorted(
        [f"adapters/ro/versions/{2:08d}.json", *(f"adapters/ro/blobs/{m.blob}/{rel}" for rel in m.files)])


def _fill(mnt: Path, leave_bytes: int) -> int:
    """Fill the filesystem with one file, leaving ``leave_bytes`` free; return what is free."""
    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(mnt)
    size = max(st.f_bavail * st.f_frsize - leave_bytes, 0)
    try:
        with open(filler, "wb") as f:
            f.write(b"\0" * size)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    st = os.statvfs(mnt)
    return st.f_bavail * st.f_frsize


RLIMIT_PUSHER = """
import resource, signal, sys
from pathlib import Path
from lorafleet.core.settings import get_settings
from lorafleet.registry.bases import BaseStore
from lorafleet.registry.errors import RegistryError
from lorafleet.registry.storage import LocalStorage
from lorafleet.registry.store import Registry
settings = get_settings()
base = BaseStore(settings.layout.bases).require(sys.argv[3])
reg = Registry(LocalStorage(Path(sys.argv[2])), Path(sys.argv[2]).parent / "cache")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[4]), int(sys.argv[4])))
try:
    print(reg.push(Path(sys.argv[1]), "full", base).ref)
except RegistryError as err:
    print("RegistryError:", err)
"""


def test_registry_push_on_a_full_disk_is_a_clean_error(settings, tiny_base, small_adapter, tmpfs,
                                                       tmp_path) -> None:
    mnt, why = tmpfs
    if mnt is None:  # fall back: a file-size rlimit makes writes past it fail (EFBIG) in a child process
        root = tmp_path / "registry"
        reg = Registry(LocalStorage(root), tmp_path / "cache")
        assert reg.push(small_adapter, "full", tiny_base).ref == "full@1"
        before = _files(root)
        env = dict(os.environ, LORAFLEET_HOME=str(settings.home))
        out = subprocess.run([sys.executable, "-c", RLIMIT_PUSHER, str(small_adapter), str(root), TINY_BASE,
                              "2048"], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("RegistryError:") and "File too large" in out.stdout, (out.stdout, out.stderr)
        assert _files(root) == before and reg.versions("full") == [1]
        print(f"\nfull disk: tmpfs not mountable ({why}); used RLIMIT_FSIZE (EFBIG) instead")
    else:
        root = mnt / "registry"
        reg = Registry(LocalStorage(root), tmp_path / "cache")
        assert reg.push(small_adapter, "full", tiny_base).ref == "full@1"
        before = _files(root)
        assert _fill(mnt, 0) < 4096
        cli = _cli_push(settings, root, small_adapter, "full")
        assert cli.returncode == 2, cli.stderr[-2000:]
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], lines
        # every amount of free space short of a whole push fails at a different write (blob files,
        # then the manifest): each time a clean error and nothing left behind
        failures, free_pages = 0, 0
        while True:
            _fill(mnt, free_pages * 4096)
            try:
                m = reg.push(small_adapter, "full", tiny_base)
            except RegistryError as err:
                assert "No space left on device" in str(err) and "\n" not in str(err), err
                assert _files(root) == before, (free_pages, sorted(set(_files(root)) - set(before)))
                assert reg.versions("full") == [1] and [x.ref for x in reg.list("full")] == ["full@1"]
                failures += 1
                free_pages += 1
                assert free_pages < 200, "pushes kept failing with plenty of space"
                continue
            break
        print(f"\nfull disk (tmpfs 2 MiB): {failures} failed pushes (0..{free_pages - 1} free pages), "
              f"then {m.ref} with {free_pages} pages free")
        assert failures >= 3  # at least: the first blob file, a later one, the manifest
        assert m.ref == "full@2"
        (mnt / "filler").unlink()
    reg.verify("full@1")
    m = reg.push(small_adapter, "full", tiny_base)
    assert m.ref == ("full@3" if mnt is not None else "full@2")
    reg.verify(m.ref)
