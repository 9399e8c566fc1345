"""`make audit`: known vulnerabilities in the installed environment (pip-audit), reported only.

Runs pip-audit over the interpreter's environment (the project's .venv under `make`), skipping
the editable lorafleet itself, and prints one line per vulnerable package with its advisory ids
and fixed versions. It never fails the build on findings (``--fail-on-findings`` makes it do
so) and, when the vulnerability service cannot be reached (a machine without a network), says
so plainly and exits 0.

The service: ``pypi`` (PyPI's JSON API, one request per package; reachable wherever pip's index
is) or ``osv`` (api.osv.dev). ``auto`` (the default) uses the first that answers a probe.
The full JSON report is written to ``out/audit/pip-audit.json``.

Run: .venv/bin/python scripts/audit.py [--service auto|pypi|osv] [--fail-on-findings]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "out" / "audit" / "pip-audit.json"
PROBES = {"pypi": "https://pypi.org/pypi/pip/json", "osv": "https://api.osv.dev/v1/query"}
UNREACHABLE = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Max retries exceeded", "NewConnectionError",
               "Name or service not known", "Temporary failure in name resolution", "Connection refused",
               "Network is unreachable", "ProxyError", "timed out", "ServiceError", "SSLError")

__all__ = ["main", "pick_service", "summarise_report"]


def reachable(service: str, timeout_s: float = 5.0) -> bool:
    """True if the service's API answers at all (any HTTP status)."""
    try:
        if service == "osv":
            httpx.post(PROBES[service], json={"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "1.0"},
                       timeout=timeout_s)
        else:
            httpx.get(PROBES[service], timeout=timeout_s)
        return True
    except httpx.HTTPError:
        return False


def pick_service(choice: str) -> str | None:
    """The service to use: the one named, or under ``auto`` the first that answers; None if none does."""
    if choice != "auto":
        return choice if reachable(choice) else None
    return next((s for s in ("pypi", "osv") if reachable(s)), None)


def summarise_report(report: dict) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str]], int]:
    """(name, version, advisory ids, fixed in) per vulnerability; (name, reason) per skipped; packages audited."""
    found, skipped, audited = [], [], 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append((dep["name"], dep["skip_reason"]))
            continue
        audited += 1
        for v in dep.get("vulns", []):
            ids = ", ".join([v["id"], *v.get("aliases", [])])
            found.append((dep["name"], dep["version"], ids, ", ".join(v.get("fix_versions", [])) or "no fix yet"))
    return found, skipped, audited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=["auto", "pypi", "osv"], default="auto",
                        help="vulnerability service (default: the first that answers)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON report goes")
    parser.add_argument("--timeout-s", type=int, default=600, help="give up on pip-audit after this long")
    parser.add_argument("--fail-on-findings", action="store_true", help="exit 1 when a vulnerability is found")
    args = parser.parse_args(argv)

    service = pick_service(args.service)
    if service is None:
        print(f"audit: SKIPPED, the vulnerability service ({args.service}: "
              f"{', '.join(PROBES) if args.service == 'auto' else PROBES[args.service]}) is unreachable from this "
              "machine; no vulnerability data was checked")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip_audit", "--skip-editable", "--service", service, "--format", "json",
           "--output", str(args.out), "--progress-spinner", "off", "--desc", "off"]
    print(f"audit: pip-audit over {sys.prefix} with the {service} service ...", flush=True)
    started = time.perf_counter()
    args.out.unlink(missing_ok=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        print(f"audit: SKIPPED, pip-audit did not finish in {args.timeout_s} s (slow or unreachable service)")
        return 0
    except FileNotFoundError as err:
        print(f"audit: NOT RUN, {err}")
        return 0
    took = time.perf_counter() - started
    if not args.out.is_file():
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        if "No module named pip_audit" in tail:
            print("audit: NOT RUN, pip-audit is not installed in this environment (`make setup` installs it)")
        elif any(marker in tail for marker in UNREACHABLE):
            print(f"audit: SKIPPED, the {service} service stopped answering during the audit:\n{tail}")
        else:
            print(f"audit: NOT RUN, pip-audit failed (exit code {proc.returncode}):\n{tail}")
        return 0
    found, skipped, audited = summarise_report(json.loads(args.out.read_text()))
    print(f"audit: {audited} packages checked in {took:.0f} s, {len(found)} known vulnerabilities "
          f"({len({f[0] for f in found})} packages); report {args.out}")
    width = max([len(f"{n} {v}") for n, v, _, _ in found] or [0])
    for name, version, ids, fixed in found:
        print(f"  {f'{name} {version}':<{width}}  {ids}  (fixed in: {fixed})")
    if skipped:
        print(f"  not checked: {', '.join(f'{n} ({r})' for n, r in skipped)}")
    if found and not args.fail_on_findings:
        print("audit: reported only; the build does not fail on findings")
    return 1 if found and args.fail_on_findings else 0


if __name__ == "__main__":
    sys.exit(main())
