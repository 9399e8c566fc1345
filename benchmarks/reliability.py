"""Reliability figures in one report: the load held, the faults survived, the bad inputs refused.

Two parts, each optional:
  1. load: locust (loadtests/locustfile.py's mix) against a throw-away deployment on the tiny
     random base (loadtests/tiny_deployment.py: a real vLLM engine and the real gateway, two
     adapter routes one with a 5% canary, the base); every user keeps one request in flight
     (no wait), so the concurrency held is the user count. Requests per second, latency
     percentiles, failures, and the mean and peak requests in flight measured at the client.
  2. tests: the fault-injection and hostile-input test files run with pytest (a real engine on
     the tiny base); their JUnit XML gives the faults injected and survived, the hand-written
     bad inputs tried and refused, and the schemathesis requests generated. A file that is not
     in the checkout is listed as missing.

Writes benchmarks/out/reliability.md, reliability.json and reliability.png (never pass/fail:
the exit code is 0 whatever the figures; the tests themselves are the pass/fail).

Run: .venv/bin/python benchmarks/reliability.py [--users 16] [--run-time 30s] [--skip-load] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import OUT, print_table  # noqa: E402

# file -> what its test cases count as
TEST_FILES = {
    "tests/integration/test_faults.py": "faults",
    "tests/integration/test_hostile_inputs.py": "hostile inputs",
    "tests/integration/test_fuzz_gateway.py": "fuzzing",
}
SCHEMATHESIS_LINE = re.compile(r"schemathesis: (\d+) requests, statuses (\{[^}]*\})")


def max_in_flight(records: list[dict]) -> int:
    """Most requests open at once, from each request's start and end as the client saw them."""
    events = sorted([(r["t"], 1) for r in records] + [(r["t_end"], -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def load_part(users: int, run_time: str, say=print) -> dict:
    from loadtests.report import read_records
    from loadtests.run import run_load
    from loadtests.tiny_deployment import tiny_deployment

    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the tiny deployment's engine on the way out
    out_dir = OUT / "reliability-load"
    with tiny_deployment(say=say) as root:
        summary = run_load(root, users=users, spawn_rate=float(users), run_time=run_time, out_dir=out_dir,
                           wait_s="0", title=f"reliability load: {users} users, no wait, {run_time}, tiny base")
    records = read_records(out_dir / "requests.csv")
    total = summary["total"]
    return {"users": users, "run_time": run_time, "requests": total["requests"], "failures": total["failures"],
            "rps": total["rps"], "p50_s": total["p50_s"], "p95_s": total["p95_s"], "p99_s": total["p99_s"],
            "concurrency_mean": total["concurrency_mean"], "concurrency_peak": max_in_flight(records),
            "span_s": total["span_s"], "statuses": _count(r["status"] for r in records),
            "types": summary["types"], "canary": summary["canary"], "png": summary["png"],
            "_records": records}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def parse_junit(path: Path) -> list[dict]:
    """One dict per test case: file, name, outcome (passed|failed|error|skipped), seconds, stdout."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (found.get("message") or "").strip().splitlines()[0][:300] if found.get("message") else ""
        module = case.get("classname", "").split(".")
        file = "/".join(module[: next((i + 1 for i, p in enumerate(module) if p.startswith("test_")), len(module))])
        out = case.find("system-out")
        cases.append({"file": file + ".py", "name": case.get("name", ""), "outcome": outcome, "message": message,
                      "seconds": float(case.get("time") or 0), "stdout": out.text if out is not None else ""})
    return cases


def tests_part(files: dict[str, str], say=print) -> dict:
    present = [f for f in files if (REPO / f).is_file()]
    missing = [f for f in files if f not in present]
    result = {"files": files, "present": present, "missing": missing, "cases": [], "pytest_exit_code": None}
    if not present:
        return result
    junit = OUT / "reliability-tests.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", *present, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           "-o", "junit_logging=system-out", "-o", "junit_family=xunit2"]
    say("$ " + " ".join(cmd[2:]))
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    result["pytest_exit_code"] = proc.returncode
    result["seconds"] = time.perf_counter() - started
    result["pytest_tail"] = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if junit.is_file():
        result["cases"] = parse_junit(junit)
    else:
        say(proc.stdout[-3000:] + proc.stderr[-2000:])
    return result


def figures(tests: dict) -> dict:
    """Counts per category from the test cases."""
    out = {}
    for file, category in tests["files"].items():
        cases = [c for c in tests["cases"] if c["file"] == file]
        row = {"file": file, "present": file in tests["present"], "cases": len(cases),
               "passed": sum(c["outcome"] == "passed" for c in cases),
               "failed": sum(c["outcome"] == "failed" for c in cases),
               "errors": sum(c["outcome"] == "error" for c in cases),  # setup/teardown: the test did not run
               "skipped": sum(c["outcome"] == "skipped" for c in cases),
               "failed_names": [c["name"] for c in cases if c["outcome"] == "failed"],
               "error_messages": sorted({c["message"] for c in cases if c["outcome"] == "error"})}
        generated = []
        for c in cases:
            for m in SCHEMATHESIS_LINE.finditer(c["stdout"] or ""):
                generated.append({"requests": int(m.group(1)), "statuses": m.group(2)})
        if generated:
            row["generated_requests"] = sum(g["requests"] for g in generated)
            row["generated_statuses"] = generated[-1]["statuses"]
        out[category] = row
    return out


def plot(load: dict | None, counts: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    if load and load["_records"]:
        rs = load["_records"]
        t0 = min(r["t"] for r in rs)
        end = max(r["t_end"] for r in rs)
        step = 2.0
        xs, rps, inflight, fails = [], [], [], []
        t = t0
        while t < end:
            done = [r for r in rs if t <= r["t_end"] < t + step]
            xs.append(t - t0 + step / 2)
            rps.append(len(done) / step)
            fails.append(sum(r["status"] != 200 for r in done) / step)
            mid = t + step / 2
            inflight.append(sum(1 for r in rs if r["t"] <= mid < r["t_end"]))
            t += step
        ax.plot(xs, rps, "o-", ms=3, label="requests/s completed")
        ax.plot(xs, fails, "x-", ms=4, color="tab:red", label="failed/s")
        ax.set(xlabel="seconds into the run", ylabel="requests / s",
               title=f"load held: {load['users']} users, {load['rps']:.1f} rps, {load['failures']} failed")
        twin = ax.twinx()
        twin.plot(xs, inflight, color="tab:gray", alpha=0.6, label="in flight")
        twin.set_ylabel("requests in flight")
        twin.set_ylim(0, max(inflight + [1]) * 1.3)
        ax.legend(loc="lower left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "load part not run", ha="center", transform=ax.transAxes)
    ax = axes[1]
    labels = [f"{cat}\n({'missing' if not row['present'] else str(row['cases']) + ' cases'})"
              for cat, row in counts.items()]
    ax.bar(labels, [row["passed"] for row in counts.values()], color="tab:green", label="passed (survived/refused)")
    ax.bar(labels, [row["failed"] for row in counts.values()], bottom=[row["passed"] for row in counts.values()],
           color="tab:red", label="failed")
    ax.bar(labels, [row["errors"] for row in counts.values()],
           bottom=[row["passed"] + row["failed"] for row in counts.values()], color="tab:gray",
           label="not run (setup error)")
    ax.set(ylabel="test cases", title="faults injected, hostile inputs and fuzzing")
    for i, row in enumerate(counts.values()):
        if row.get("generated_requests"):
            ax.annotate(f"{row['generated_requests']} generated requests", (i, row["passed"]), ha="center",
                        va="bottom", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(report: dict) -> str:
    lines = [f"# lorafleet reliability report ({report['when']})", ""]
    load = report.get("load")
    if load:
        lines += [
            "## Load held", "",
            f"locust, {load['users']} users with no wait between requests, {load['run_time']}, against a throw-away "
            "deployment on the tiny random base (real vLLM engine, real gateway; two adapter routes, one with a "
            "5% canary, and the base).", "",
            "| figure | value |", "|---|---|",
            f"| requests | {load['requests']} |",
            f"| failed requests | {load['failures']} |",
            f"| requests per second | {load['rps']:.2f} |",
            f"| concurrency held (users) | {load['users']} |",
            f"| requests in flight, mean / peak (client side) | {load['concurrency_mean']:.1f} / "
            f"{load['concurrency_peak']} |",
            f"| latency p50 / p95 / p99 (s) | {load['p50_s']:.3f} / {load['p95_s']:.3f} / {load['p99_s']:.3f} |",
            f"| HTTP statuses | {load['statuses']} |",
        ]
        for c in load["canary"]:
            share = "n/a" if c["share"] is None else f"{100 * c['share']:.1f}%"
            lines.append(f"| canary share of {c['route']} (configured {c['configured_percent']:g}%) | {share} "
                         f"({c['canary']} of {c['requests']}) |")
        lines += ["", "| request type | requests | failures | rps | p50 s | p95 s |", "|---|---|---|---|---|---|"]
        for t in load["types"]:
            lines.append(f"| {t['name']} | {t['requests']} | {t['failures']} | {t['rps']:.2f} | {t['p50_s']:.3f} | "
                         f"{t['p95_s']:.3f} |")
        lines.append("")
    tests = report.get("tests")
    if tests:
        lines += ["## Faults, hostile inputs, fuzzing", "",
                  "| category | file | test cases | passed | failed | not run (setup error) | skipped | notes |",
                  "|---|---|---|---|---|---|---|---|"]
        for cat, row in report["counts"].items():
            note = "not in this checkout" if not row["present"] else ""
            if row.get("generated_requests"):
                note = f"{row['generated_requests']} generated requests, statuses {row['generated_statuses']}"
            if row["failed_names"]:
                note += (" " if note else "") + "failed: " + ", ".join(row["failed_names"])
            if row["error_messages"]:
                note += (" " if note else "") + "setup error: " + "; ".join(row["error_messages"])
            lines.append(f"| {cat} | `{row['file']}` | {row['cases']} | {row['passed']} | {row['failed']} | "
                         f"{row['errors']} | {row['skipped']} | {note.replace('|', '/')} |")
        lines += ["", f"pytest exit code {tests['pytest_exit_code']}, {tests.get('seconds', 0):.0f} s "
                  f"({' '.join(tests.get('pytest_tail', []))})", ""]
        for cat in report["counts"]:
            cases = [c for c in tests["cases"] if c["file"] == report["counts"][cat]["file"]]
            if cases:
                lines += [f"### {cat}", ""] + [
                    f"- {c['outcome']}: `{c['name']}` ({c['seconds']:.1f} s)"
                    + (f": {c['message']}" if c["outcome"] in ("failed", "error") and c["message"] else "")
                    for c in cases] + [""]
    lines += [f"![reliability]({Path(report['png']).name})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16, help="locust users, each with one request in flight")
    parser.add_argument("--run-time", default="30s", help="load duration (locust syntax)")
    parser.add_argument("--skip-load", action="store_true", help="leave out the load part")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the fault and hostile-input tests")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    load = None if args.skip_load else load_part(args.users, args.run_time)
    tests = {"files": TEST_FILES, "present": [], "missing": list(TEST_FILES), "cases": [],
             "pytest_exit_code": None} if args.skip_tests else tests_part(TEST_FILES)
    counts = figures(tests)
    report.update({"load": {k: v for k, v in load.items() if not k.startswith("_")} if load else None,
                   "tests": None if args.skip_tests else {**tests, "cases": [
                       {k: v for k, v in c.items() if k != "stdout"} for c in tests["cases"]]},
                   "counts": counts})
    report["png"] = str(plot(load, counts, OUT / "reliability.png"))
    (OUT / "reliability.json").write_text(json.dumps(report, indent=2))
    (OUT / "reliability.md").write_text(markdown(report))
    if load:
        print_table("load held", ["users", "requests", "failed", "rps", "in flight mean", "peak", "p50 s", "p95 s"],
                    [[load["users"], load["requests"], load["failures"], load["rps"], load["concurrency_mean"],
                      load["concurrency_peak"], load["p50_s"], load["p95_s"]]])
    print_table("faults, hostile inputs, fuzzing (test cases)",
                ["category", "present", "cases", "passed", "failed", "setup error", "skipped", "generated requests"],
                [[cat, row["present"], row["cases"], row["passed"], row["failed"], row["errors"], row["skipped"],
                  row.get("generated_requests", "")] for cat, row in counts.items()])
    for cat, row in counts.items():
        for message in row["error_messages"]:
            print(f"{cat}: not run, setup error: {message}")
    print(f"\nreport: {OUT / 'reliability.md'} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
