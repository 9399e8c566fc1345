"""`make loadtest`: locust, headless, against a lorafleet gateway; a summary table and a PNG.

Which gateway:
  1. ``--url URL`` when given;
  2. else the deployment `platform serve --detach` (and so `make quickstart`) left running,
     found through its pid file in the platform home (``LORAFLEET_HOME``, default ~/.lorafleet);
  3. else a throw-away deployment on the tiny random base that this script starts and stops
     itself (``loadtests/tiny_deployment.py``); ``--tiny`` forces it.
The mix is in ``loadtests/locustfile.py``. A gateway with a keys file needs
``LORAFLEET_API_KEY`` (make one with `platform keys add loadtest`; the gateway reads its keys
file when it starts). The running deployment is only called, never changed.

Output (``--out``, default benchmarks/out/loadtest/): locust's CSVs (``loadtest_*.csv``), one
line per request (``requests.csv``), ``summary.json`` and ``loadtest.png`` (latency percentiles,
throughput and the canary share over time). Exit code 0 however many requests failed (this
measures; it does not judge), 2 when it could not run.

Run: .venv/bin/python loadtests/run.py [-u 8] [-r 2] [-t 60s] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests.plot import plot  # noqa: E402
from loadtests.report import canary_share, print_summary, read_locust_stats, read_records, summarise  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_OUT = REPO / "benchmarks" / "out" / "loadtest"

__all__ = ["run_load", "parse_duration", "main"]


def parse_duration(text: str) -> float:
    """Locust's run-time syntax (``60s``, ``2m``, ``1h30m``, ``90``) in seconds."""
    from lorafleet.core.units import parse_duration_s

    return parse_duration_s(text, "--run-time")


def _headers() -> dict[str, str]:
    key = os.environ.get("LORAFLEET_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def requests_by_variant(root: str, headers: dict[str, str]) -> dict[tuple[str, str, str], float]:
    """The gateway's own request counter: (route, variant, status) -> count."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{root}/metrics", headers=headers, timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "lorafleet_requests":
            for s in family.samples:
                if s.name == "lorafleet_requests_total":
                    key = (s.labels["route"], s.labels["variant"], s.labels["status"])
                    out[key] = out.get(key, 0.0) + s.value
    return out


def canary_weights(root: str, headers: dict[str, str]) -> dict[str, float]:
    """route -> configured canary percent, for routes that have a canary."""
    data = httpx.get(f"{root}/v1/models", headers=headers, timeout=10).json()["data"]
    return {m["id"]: float((m.get("versions") or {}).get("canary_weight") or 0.0) for m in data
            if (m.get("versions") or {}).get("canary")}


def run_locust(root: str, users: int, spawn_rate: float, run_time: str, out_dir: Path, wait_s: str,
               say=print) -> tuple[int, Path, Path, Path]:
    """One headless locust run, with a progress line every 10 s; (exit code, CSV prefix, records, log)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix, records, log = out_dir / "loadtest", out_dir / "requests.csv", out_dir / "locust.log"
    for old in [*out_dir.glob("loadtest_*.csv"), Path(f"{prefix}_final.json"), records]:
        old.unlink(missing_ok=True)
    env = {**os.environ, "LOADTEST_RECORDS_CSV": str(records), "LOADTEST_WAIT_S": wait_s}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r",
           str(spawn_rate), "-t", run_time, "--host", root, "--csv", str(prefix), "--csv-full-history",
           "--json-file", f"{prefix}_final", "--only-summary", "--stop-timeout", "60s", "--loglevel", "WARNING"]
    say("$ locust " + " ".join(cmd[3:]) + f"   (log {log})")
    duration = parse_duration(run_time)
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        shown = False
        while proc.poll() is None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - started
            if not shown:  # the mix the locustfile chose, once it has started
                lines = [ln for ln in log.read_text().splitlines() if ln.startswith("loadtest ")]
                if lines:
                    say("\n".join("  " + ln for ln in lines))
                    shown = True
            if proc.returncode is None:
                rows = read_records(records)
                bad = sum(1 for r in rows if r["status"] != 200)
                say(f"  [{elapsed:4.0f}s/{duration:.0f}s] {len(rows)} requests done, {bad} not HTTP 200")
            if elapsed > duration + 240:
                proc.kill()
                say("locust did not stop in time: killed")
    return proc.returncode, prefix, records, log


def run_load(root: str, users: int = 8, spawn_rate: float = 2.0, run_time: str = "60s",
             out_dir: Path = DEFAULT_OUT, wait_s: str = "0.5,2", title: str | None = None,
             say=print) -> dict:
    """Run locust against ``root`` and return the summary (also written to ``summary.json``)."""
    headers = _headers()
    r = httpx.get(f"{root}/v1/models", headers=headers, timeout=10)
    if r.status_code == 401:
        raise SystemExit("the gateway has a keys file: export LORAFLEET_API_KEY=<key> "
                         "(make one with `platform keys add loadtest`, then restart the gateway)")
    r.raise_for_status()
    weights = canary_weights(root, headers)
    before = requests_by_variant(root, headers)
    t0 = time.time()
    code, prefix, records_path, log = run_locust(root, users, spawn_rate, run_time, out_dir, wait_s, say)
    wall = time.time() - t0
    records = read_records(records_path)
    if not records or code not in (0, 1):  # locust exits 1 when a request failed; more is its own trouble
        say(log.read_text()[-4000:])
        raise SystemExit(f"locust {'made no request' if not records else 'failed'} (exit code {code}); "
                         f"its log ({log}) is above")
    stats = read_locust_stats(prefix)
    after = requests_by_variant(root, headers)
    summary = summarise(records, stats)
    gateway_counts: dict[str, dict[str, float]] = {}
    for (route, variant, status), value in after.items():
        delta = value - before.get((route, variant, status), 0.0)
        if delta:
            gateway_counts.setdefault(route, {})
            gateway_counts[route][f"{variant} {status}"] = delta
    summary.update({
        "url": root, "users": users, "spawn_rate": spawn_rate, "run_time": run_time, "wait_s": wait_s,
        "locust_exit_code": code, "wall_s": wall,
        "canary": [{**canary_share(records, route), "configured_percent": w} for route, w in weights.items()],
        "gateway_counts": gateway_counts,
        "locust_failures_csv": str(Path(f"{prefix}_failures.csv")), "locust_log": str(log),
    })
    png = plot(records, weights, out_dir / "loadtest.png",
               title or f"lorafleet load test: {users} users, {run_time}, {root}")
    summary["png"] = str(png)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def find_target(url: str | None, tiny: bool) -> str | None:
    """The gateway root URL to load, or None to start the tiny deployment."""
    if url:
        return url.rstrip("/").removesuffix("/v1")
    if tiny:
        return None
    from lorafleet.core.settings import get_settings
    from lorafleet.serving.server import read_pid_file

    record = read_pid_file(get_settings())
    return record["url"].removesuffix("/v1") if record else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("-u", "--users", type=int, default=8, help="concurrent locust users (default 8)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=2.0, help="users started per second (default 2)")
    parser.add_argument("-t", "--run-time", default="60s", help="how long to run (locust syntax, default 60s)")
    parser.add_argument("--wait", default="0.5,2", help="'min,max' seconds a user waits between requests")
    parser.add_argument("--url", help="gateway URL (default: the running `platform serve --detach`)")
    parser.add_argument("--tiny", action="store_true", help="always start a throw-away tiny deployment")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    try:
        parse_duration(args.run_time)
    except ValueError as err:
        parser.error(str(err))
    root = find_target(args.url, args.tiny)
    try:
        if root is not None:
            if not httpx.get(f"{root}/readyz", timeout=5).is_success:
                print(f"the gateway at {root} is not ready (GET /readyz)", file=sys.stderr)
                return 2
            print(f"load test against the running gateway {root}")
            summary = run_load(root, args.users, args.spawn_rate, args.run_time, args.out, args.wait)
        else:
            import signal

            from loadtests.tiny_deployment import tiny_deployment

            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the engine on the way out

            print("no running deployment (`platform serve --detach` / `make quickstart`): starting a throw-away "
                  "one on the tiny random base")
            with tiny_deployment() as root:
                summary = run_load(root, args.users, args.spawn_rate, args.run_time, args.out, args.wait,
                                   title=f"lorafleet load test: {args.users} users, {args.run_time}, tiny base")
    except httpx.HTTPError as err:
        print(f"cannot reach the gateway: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except SystemExit as err:
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
            return 2
        raise
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
