"""Soak run: a real tiny deployment under mixed traffic with a fault injected every 10 s.

In a throw-away platform home: the tiny random Llama as base ``tiny-llama``, two random LoRA
versions (route ``soak-a`` with a 20% canary, route ``soak-b``), served by one real
``python -m lorafleet.serving.server`` process (the gateway plus its supervised vLLM engine).

Traffic: ``--clients`` threads with the official openai client, each its own user, send a
shuffled deck of chat, completions and responses requests (streamed and not) to the two
routes and the base. Faults, one every ``--fault-every-s`` (the first after half of it), in
this cycle:

  engine_sigstop     SIGSTOP the engine's API server for 5 s, then SIGCONT
  client_disconnect  a streamed chat whose client hangs up after the first event
  upload_20mb        a 20 MB chat body (expected: 413)
  malformed_body     a truncated JSON body (expected: 400)
  unknown_model      a chat for a model nobody serves (expected: 404)
  engine_sigkill     SIGKILL the engine's API server (the supervisor restarts it on a fresh
                     port and the gateway follows)

An engine fault waits until the engine is healthy again, and so does the end of the run. A client request that fails while
an engine fault is in force (from the fault until the gateway sees the engine healthy, plus
``GRACE_S``) with 502/503/504 or a cut stream is counted as expected; any other failure is
unexpected. Sampled every second: gateway RSS and open file descriptors (/proc), /metrics
status. At the end, after the traffic stops: every engine's in-flight and in-use counts from
/admin/engines (loopback is admin in open mode).

Targets (reported, never enforced): in-flight 0 at the end, RSS growth < 10% after warm-up,
/metrics never 5xx, no failure outside the injected faults.

Writes benchmarks/out/soak.json and soak.png. The machine's load average is printed beside
the figures.

Run: .venv/bin/python benchmarks/soak_bench.py [--duration-s 600] [--quick] [--clients 4]
     [--no-responses] [--keep-home]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import OUT, pct, print_table  # noqa: E402

BASE = "tiny-llama"
ROUTES = ("soak-a", "soak-b")
FAULTS = ("engine_sigstop", "client_disconnect", "upload_20mb", "malformed_body", "unknown_model", "engine_sigkill")
ENGINE_FAULTS = {"engine_sigstop", "engine_sigkill"}
EXPECTED_STATUSES = {502, 503, 504}  # an engine fault's failures: unavailable, bad upstream answer, timeout
GRACE_S = 3.0  # after the gateway sees the engine healthy, requests that began in the fault may still end
SIGSTOP_S = 5.0
UPLOAD_BYTES = 20 * 1024 * 1024
START_TIMEOUT_S = 600.0  # engine start on 2 shared cores under load
MSG = [{"role": "user", "content": "Tell me about the sea."}]
KINDS = ("chat", "chat_stream", "completion", "completion_stream", "responses", "responses_stream")


# -- the deployment ------------------------------------------------------------------------------
def build_home(home: Path, say) -> None:
    """The tiny base, two adapter names (soak-a@1, soak-a@2, soak-b@1) and the routes file."""
    os.environ["LORAFLEET_HOME"] = str(home)
    from lorafleet.core.settings import get_settings
    from lorafleet.platform.base_pull import pull_base
    from lorafleet.registry import open_registry
    from lorafleet.serving.routes import RoutesFile
    from tests.tiny import build_tiny_llama, make_random_lora

    settings = get_settings()
    say(f"home {home}: building the tiny base and 3 adapter versions")
    base, _ = pull_base(settings, BASE, build_tiny_llama(home / "src-tiny"))
    reg = open_registry(settings)
    base_dir = settings.layout.base(BASE)
    refs = [reg.push(make_random_lora(base_dir, home / f"src-{name}-{seed}", r=8, seed=seed), name, base).ref
            for name, seed in (("soak-a", 1), ("soak-a", 2), ("soak-b", 3))]
    RoutesFile.from_mapping({"routes": {
        "soak-a": {"stable": refs[0], "canary": {"version": refs[1], "weight": 20.0}},
        "soak-b": {"stable": refs[2]},
    }}).save(settings.layout.routes_file)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def engine_pid(server_pid: int) -> int | None:
    """The vLLM API server that the server process runs now (its child with vLLM's entry point)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        st = proc_stat(int(p.name))
        if st and st[1] == server_pid and st[0] != "Z":
            with contextlib.suppress(OSError):
                if b"vllm.entrypoints" in (p / "cmdline").read_bytes():
                    return int(p.name)
    return None


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- records ---------------------------------------------------------------------------------
@dataclass
class Req:
    t: float  # start, seconds since the run began
    t_end: float
    kind: str
    model: str
    status: int  # 200 ok; an HTTP status; 0: no HTTP answer (stream cut, connection, timeout)
    detail: str = ""
    expected: bool | None = None  # for failures: inside an engine fault's window


@dataclass
class Fault:
    name: str
    t: float
    t_end: float = 0.0  # end of its window (engine faults: engine healthy again + GRACE_S)
    outcome: str = ""
    as_expected: bool = False
    waited_for_engine_s: float = 0.0


@dataclass
class Sample:
    t: float
    rss_bytes: int
    fds: int
    metrics_status: int  # 0: no answer
    metrics_s: float
    requests: int
    failures: int
    engines_healthy: int
    engine_urls: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, root: str, server: subprocess.Popen, clients: int, responses: bool) -> None:
        self.root, self.server, self.clients, self.responses = root, server, clients, responses
        self.t0 = time.monotonic()
        self.reqs: list[Req] = []
        self.faults: list[Fault] = []
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()  # traffic and faults
        self.stop_sampling = threading.Event()
        self.kinds = [k for k in KINDS if responses or not k.startswith("responses")]

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- traffic ---------------------------------------------------------------------------
    def client_loop(self, i: int) -> None:
        import openai
        from openai import OpenAI

        client = OpenAI(base_url=f"{self.root}/v1", api_key="unused", max_retries=0, timeout=120)
        rng = random.Random(i)
        deck: list[tuple[str, str]] = []
        user = f"soak-user-{i}"
        while not self.stop.is_set():
            if not deck:
                deck = [(k, m) for k in self.kinds for m in (*ROUTES, BASE)]
                rng.shuffle(deck)
            kind, model = deck.pop()
            t = self.now()
            status, detail = 200, ""
            try:
                self._send(client, kind, model, user)
            except openai.APIStatusError as exc:
                status, detail = exc.status_code, exc.message[:200]
            except openai.APIError as exc:  # connection, timeout, or an error event inside a stream
                status, detail = 0, f"{type(exc).__name__}: {exc}"[:200]
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                status, detail = 0, f"{type(exc).__name__}: {exc}"[:200]
            with self.lock:
                self.reqs.append(Req(t, self.now(), kind, model, status, detail))
            if status != 200:
                time.sleep(0.25)  # as a client would back off

    @staticmethod
    def _send(client, kind: str, model: str, user: str) -> None:
        stream = kind.endswith("_stream")
        if kind.startswith("chat"):
            r = client.chat.completions.create(model=model, messages=MSG, max_tokens=8, user=user, stream=stream)
        elif kind.startswith("completion"):
            r = client.completions.create(model=model, prompt="The sea is", max_tokens=8, user=user, stream=stream)
        else:
            r = client.responses.create(model=model, input="Tell me about the sea.", max_output_tokens=8,
                                        user=user, stream=stream)
        if stream:
            events = list(r)
            if not events:
                raise RuntimeError("an empty stream")

    # -- faults ----------------------------------------------------------------------------
    def engines(self) -> list[dict]:
        import httpx

        return httpx.get(f"{self.root}/admin/engines", timeout=10).json()["engines"]

    def wait_engine_healthy(self, timeout_s: float = START_TIMEOUT_S, not_url: str | None = None) -> float:
        """Wait until the gateway sees every engine healthy (and, with ``not_url``, at another URL)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s and self.server.poll() is None:
            with contextlib.suppress(Exception):
                engines = self.engines()
                if (all(e["healthy"] for e in engines) and engine_pid(self.server.pid)
                        and not any(e["url"] == not_url for e in engines)):
                    return time.monotonic() - t0
            time.sleep(0.25)
        raise RuntimeError(f"the engine was not healthy again within {timeout_s:.0f}s")

    def inject(self, name: str) -> Fault:
        import httpx

        fault = Fault(name, self.now())
        if name in ENGINE_FAULTS:
            fault.waited_for_engine_s = self.wait_engine_healthy()
            fault.t = self.now()
            pid = engine_pid(self.server.pid)
            old_url = None
            if name == "engine_sigstop":
                os.kill(pid, signal.SIGSTOP)
                time.sleep(SIGSTOP_S)
                os.kill(pid, signal.SIGCONT)
                fault.outcome = f"stopped {SIGSTOP_S:.0f}s"
            else:
                [old_url] = [e["url"] for e in self.engines()]
                os.kill(pid, signal.SIGKILL)
                fault.outcome = "killed"
            back_s = self.wait_engine_healthy(not_url=old_url)  # a killed one comes back on a fresh port
            fault.outcome += f", healthy again {back_s:.1f}s later"
            fault.as_expected = True
            fault.t_end = self.now() + GRACE_S
            return fault
        url = f"{self.root}/v1/chat/completions"
        try:
            if name == "client_disconnect":
                body = {"model": ROUTES[0], "messages": MSG, "max_tokens": 64, "stream": True, "user": "soak-hangup"}
                with httpx.stream("POST", url, json=body, timeout=60) as r:
                    first = next(r.iter_raw(), b"")
                fault.outcome = f"{r.status_code}, hung up after {len(first)} bytes"
                fault.as_expected = r.status_code == 200 and bool(first)
            elif name == "upload_20mb":
                r = httpx.post(url, content=b'{"model": "soak-a", "messages": [], "pad": "' + b"x" * UPLOAD_BYTES,
                               headers={"content-type": "application/json"}, timeout=60)
                fault.outcome, fault.as_expected = f"{r.status_code}", r.status_code == 413
            elif name == "malformed_body":
                r = httpx.post(url, content=b'{"model": "soak-a", "messages": [{"role": "us',
                               headers={"content-type": "application/json"}, timeout=60)
                fault.outcome, fault.as_expected = f"{r.status_code}", r.status_code == 400 and "error" in r.json()
            elif name == "unknown_model":
                r = httpx.post(url, json={"model": "no-such-model", "messages": MSG, "max_tokens": 4}, timeout=60)
                fault.outcome, fault.as_expected = f"{r.status_code}", r.status_code == 404 and "error" in r.json()
        except Exception as exc:  # noqa: BLE001 - recorded as an unexpected outcome
            fault.outcome = f"{type(exc).__name__}: {exc}"[:200]
        fault.t_end = self.now()
        return fault

    def fault_loop(self, every_s: float) -> None:
        n = 0
        next_at = every_s / 2
        while not self.stop.wait(max(0.0, next_at - self.now())):
            name = FAULTS[n % len(FAULTS)]
            try:
                fault = self.inject(name)
            except Exception as exc:  # noqa: BLE001 - recorded; the soak goes on
                fault = Fault(name, self.now(), self.now(), f"injection failed: {type(exc).__name__}: {exc}"[:200])
            with self.lock:
                self.faults.append(fault)
            n += 1
            next_at = max(next_at + every_s, self.now() + (0 if fault.name not in ENGINE_FAULTS else 1.0))

    # -- samples ---------------------------------------------------------------------------
    def sample_once(self) -> None:
        import httpx

        t = self.now()
        status, took = 0, 0.0
        try:
            t1 = time.monotonic()
            status = httpx.get(f"{self.root}/metrics", timeout=10).status_code
            took = time.monotonic() - t1
        except httpx.HTTPError:
            pass
        healthy, urls = 0, []
        with contextlib.suppress(Exception):
            engines = self.engines()
            healthy, urls = sum(e["healthy"] for e in engines), [e["url"] for e in engines]
        with self.lock:
            done = len(self.reqs)
            failed = sum(r.status != 200 for r in self.reqs)
        pid = self.server.pid
        self.samples.append(Sample(t, rss_bytes(pid), open_fds(pid), status, took, done, failed, healthy, urls))

    def sample_loop(self) -> None:
        while not self.stop_sampling.wait(1.0):
            if self.server.poll() is not None:
                return
            self.sample_once()

    # -- judging ---------------------------------------------------------------------------
    def judge(self) -> None:
        windows = [(f.t, f.t_end) for f in self.faults if f.name in ENGINE_FAULTS]
        for r in self.reqs:
            if r.status != 200:
                r.expected = (r.status in EXPECTED_STATUSES or r.status == 0) and any(
                    r.t < end and r.t_end >= start for start, end in windows)


def start_server(home: Path, port: int, say) -> subprocess.Popen:
    from lorafleet.engine.process import answers_ok

    log = home / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "lorafleet.serving.server", "--base", BASE, "--port", str(port)],
                            env={**os.environ, "LORAFLEET_HOME": str(home)}, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}); see {log}")
        if answers_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=2):
            say(f"server ready in {time.monotonic() - t0:.0f}s (pid {proc.pid}, log {log})")
            return proc
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready in {START_TIMEOUT_S:.0f}s; see {log}")


# -- report --------------------------------------------------------------------------------------
def summarize(soak: Soak, duration_s: float, end_engines: list[dict], load: dict) -> dict:
    reqs, samples = soak.reqs, soak.samples
    warmup_s = min(60.0, duration_s / 4)
    after = [s for s in samples if s.t >= warmup_s]
    base_rss = pct([s.rss_bytes for s in after[:10]], 50) if after else float("nan")
    end_rss = pct([s.rss_bytes for s in after[-10:]], 50) if after else float("nan")
    growth = (end_rss - base_rss) / base_rss * 100 if after else float("nan")
    by_kind: dict[str, dict] = {}
    for r in reqs:
        k = by_kind.setdefault(r.kind, {"requests": 0, "ok": 0, "expected_failures": 0, "unexpected_failures": 0,
                                        "latencies_s": []})
        k["requests"] += 1
        if r.status == 200:
            k["ok"] += 1
            k["latencies_s"].append(r.t_end - r.t)
        elif r.expected:
            k["expected_failures"] += 1
        else:
            k["unexpected_failures"] += 1
    for k in by_kind.values():
        lat = k.pop("latencies_s")
        k["p50_s"], k["p95_s"] = pct(lat, 50), pct(lat, 95)
    failures_by_status: dict[str, dict[str, int]] = {"expected": {}, "unexpected": {}}
    for r in reqs:
        if r.status != 200:
            side = failures_by_status["expected" if r.expected else "unexpected"]
            side[str(r.status)] = side.get(str(r.status), 0) + 1
    metrics_5xx = sum(s.metrics_status >= 500 or s.metrics_status == 0 for s in samples)
    inflight_end = sum(e["inflight"] for e in end_engines)
    in_use_end = sum(sum(e.get("in_use", {}).values()) for e in end_engines)
    unexpected = [asdict(r) for r in reqs if r.status != 200 and not r.expected]
    restarts = len({u for s in samples for u in s.engine_urls}) - 1 if samples else 0
    return {
        "duration_s": duration_s, "clients": soak.clients, "responses": soak.responses, "load_average": load,
        "requests": len(reqs), "ok": sum(r.status == 200 for r in reqs), "by_kind": by_kind,
        "failures_by_status": failures_by_status, "unexpected_failures": unexpected[:50],
        "faults": [asdict(f) for f in soak.faults], "engine_url_changes": max(restarts, 0),
        "rss": {"warmup_s": warmup_s, "after_warmup_bytes": base_rss, "end_bytes": end_rss, "growth_pct": growth},
        "fds": {"min": min((s.fds for s in samples), default=0), "max": max((s.fds for s in samples), default=0),
                "end": samples[-1].fds if samples else 0},
        "metrics": {"scrapes": len(samples), "not_200": metrics_5xx,
                    "p95_s": pct([s.metrics_s for s in samples if s.metrics_status == 200], 95)},
        "end_engines": end_engines,
        "targets": {
            "inflight_0_at_end": {"value": inflight_end, "in_use": in_use_end,
                                  "met": inflight_end == 0 and in_use_end == 0},
            "rss_growth_lt_10pct": {"value": growth, "met": growth < 10},
            "metrics_never_5xx": {"value": metrics_5xx, "met": metrics_5xx == 0},
            "no_unexpected_failures": {"value": len(unexpected), "met": not unexpected},
            "faults_answered_as_expected": {"value": sum(not f.as_expected for f in soak.faults),
                                            "met": all(f.as_expected for f in soak.faults)},
        },
        "samples": [asdict(s) for s in samples],
        "requests_list": [{"t": r.t, "t_end": r.t_end, "kind": r.kind, "status": r.status, "expected": r.expected}
                          for r in reqs],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    bin_s = 2.0  # requests ended per second, by outcome, in 2 s bins
    end_t = max([s["t"] for s in samples] + [r["t_end"] for r in result["requests_list"]] + [1.0])
    bins = [i * bin_s for i in range(int(end_t / bin_s) + 1)]
    for label, color, keep in (("ok", "tab:blue", lambda r: r["status"] == 200),
                               ("expected failures", "tab:orange", lambda r: r["status"] != 200 and r["expected"]),
                               ("UNEXPECTED failures", "tab:red", lambda r: r["status"] != 200 and not r["expected"])):
        counts = [0] * len(bins)
        for r in result["requests_list"]:
            if keep(r):
                counts[min(int(r["t_end"] / bin_s), len(bins) - 1)] += 1
        axes[0].step(bins, [c / bin_s for c in counts], where="post", label=label, color=color)
    axes[0].set_ylabel("requests/s")
    axes[0].legend(loc="upper right")
    axes[1].plot(t, [s["rss_bytes"] / 2**20 for s in samples], color="tab:purple")
    axes[1].axvline(result["rss"]["warmup_s"], color="grey", ls=":", lw=1)
    axes[1].set_ylabel("gateway RSS (MiB)")
    axes[1].ticklabel_format(axis="y", useOffset=False)
    axes[2].plot(t, [s["fds"] for s in samples], color="tab:green")
    axes[2].set_ylabel("open fds")
    axes[3].plot(t, [s["metrics_s"] * 1000 for s in samples], color="tab:orange", label="/metrics ms")
    bad = [s["t"] for s in samples if s["metrics_status"] != 200]
    axes[3].scatter(bad, [0] * len(bad), color="red", marker="x", label="/metrics not 200")
    axes[3].set_ylabel("/metrics (ms)")
    axes[3].set_xlabel("seconds")
    axes[3].legend(loc="upper right")
    colors = {"engine_sigkill": "red", "engine_sigstop": "orange"}
    for f in result["faults"]:
        for ax in axes:
            ax.axvline(f["t"], color=colors.get(f["name"], "grey"), lw=0.8, alpha=0.6)
        axes[0].text(f["t"], axes[0].get_ylim()[1] * 0.95, f["name"].replace("_", " "), rotation=90, fontsize=6,
                     va="top")
    la = result["load_average"]
    fig.suptitle(f"soak: {result['requests']} requests, {len(result['faults'])} faults, {result['clients']} clients "
                 f"(load average {la['start']:.1f} -> {la['end']:.1f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(result: dict) -> None:
    print_table("requests by kind", ["kind", "requests", "ok", "expected fail", "UNEXPECTED", "p50 s", "p95 s"],
                [[k, v["requests"], v["ok"], v["expected_failures"], v["unexpected_failures"], v["p50_s"], v["p95_s"]]
                 for k, v in sorted(result["by_kind"].items())])
    print_table("faults", ["t s", "fault", "outcome", "as expected"],
                [[round(f["t"], 1), f["name"], f["outcome"], f["as_expected"]] for f in result["faults"]])
    print(f"\nfailures by status: expected {result['failures_by_status']['expected']}, "
          f"unexpected {result['failures_by_status']['unexpected']}")
    for r in result["unexpected_failures"][:10]:
        print(f"  UNEXPECTED t={r['t']:.1f}s {r['kind']} {r['model']} {r['status']} {r['detail']}")
    rss = result["rss"]
    print_table("targets", ["target", "value", "met"],
                [[name, json.dumps(v["value"]) if not isinstance(v["value"], float) else round(v["value"], 2),
                  v["met"]] for name, v in result["targets"].items()])
    print(f"\nRSS after warm-up ({rss['warmup_s']:.0f}s) {rss['after_warmup_bytes'] / 2**20:.1f} MiB -> end "
          f"{rss['end_bytes'] / 2**20:.1f} MiB ({rss['growth_pct']:+.1f}%); fds {result['fds']}; "
          f"/metrics {result['metrics']}; engine URL changes (restarts on a fresh port) "
          f"{result['engine_url_changes']}; load average {result['load_average']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=600.0, help="how long the traffic runs (default 600)")
    parser.add_argument("--quick", action="store_true", help="a 60 s run (overrides --duration-s)")
    parser.add_argument("--clients", type=int, default=4, help="client threads, one user each")
    parser.add_argument("--fault-every-s", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--no-responses", action="store_true", help="leave /v1/responses out of the mix")
    parser.add_argument("--keep-home", action="store_true", help="keep the throw-away home (logs) afterwards")
    args = parser.parse_args(argv)
    duration_s = 60.0 if args.quick else args.duration_s
    say = lambda m: print(m, flush=True)  # noqa: E731

    from lorafleet.engine.process import end_process_group, free_port

    home = Path(tempfile.mkdtemp(prefix="lorafleet-soak-"))
    load_start = os.getloadavg()[0]
    server = None
    try:
        build_home(home, say)
        port = free_port()
        server = start_server(home, port, say)
        soak = Soak(f"http://127.0.0.1:{port}", server, args.clients, not args.no_responses)
        say(f"soak: {duration_s:.0f}s, {args.clients} clients, a fault every {args.fault_every_s:.0f}s "
            f"(load average {load_start:.1f})")
        soak.sample_once()
        threads = [threading.Thread(target=soak.client_loop, args=(i,), daemon=True) for i in range(args.clients)]
        threads += [threading.Thread(target=soak.sample_loop, daemon=True),
                    threading.Thread(target=soak.fault_loop, args=(args.fault_every_s,), daemon=True)]
        for th in threads:
            th.start()
        while soak.now() < duration_s and server.poll() is None:
            time.sleep(1.0)
            if int(soak.now()) % 30 == 0:
                say(f"  {soak.now():.0f}s: {len(soak.reqs)} requests, {len(soak.faults)} faults")
        soak.stop.set()
        for th in threads[:-2] + threads[-1:]:  # the sampler goes on until the engine is back
            th.join(timeout=START_TIMEOUT_S)  # a fault may be waiting for the engine to come back
        if server.poll() is not None:
            raise SystemExit(f"the server died during the soak (code {server.returncode}); see {home}/server.log")
        soak.wait_engine_healthy()
        time.sleep(2.0)  # what was cut settles
        soak.stop_sampling.set()
        soak.sample_once()
        end_engines = soak.engines()
        soak.judge()
        result = summarize(soak, duration_s, end_engines, {"start": load_start, "end": os.getloadavg()[0]})
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "soak.json").write_text(json.dumps(result, indent=2))
        plot(result, OUT / "soak.png")
        report(result)
        say(f"\nwrote {OUT / 'soak.json'} and {OUT / 'soak.png'}")
    finally:
        if server is not None and server.poll() is None:
            end_process_group(server.pid, grace_s=30)
            server.wait(timeout=30)
        if args.keep_home:
            say(f"home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
