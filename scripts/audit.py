"""`make audit`: known vulnerabilities in the installed environment (pip-audit), reported only.

Runs pip-audit over the interpreter's environment (the project's .venv under `make`), skipping
the editable lorafleet itself, and prints one line per vulnerable package with its advisory ids
and fixed versions. It never fails the build on findings (``--fail-on-findings`` makes it do
so) and, when the vulnerability service cannot be reached (a machine without a network), says
so plainly and exits 0.

The service: ``pypi`` (the package index's JSON API, one request per package, at the address
pip itself uses) or ``osv`` (the OSV database, at the address pip-audit itself uses). ``auto``
(the default) uses the first that answers a probe. No host is written here: both addresses
come from the installed pip and pip-audit.
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
UNREACHABLE = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Max retries exceeded", "NewConnectionError",
               "Name or service not known", "Temporary failure in name resolution", "Connection refused",
               "Network is unreachable", "ProxyError", "timed out", "ServiceError", "SSLError")

NOT_ON_PYPI = "Dependency not found on PyPI"

__all__ = ["main", "pick_service", "summarise_report", "latest_release_check"]


def index_json_api() -> str:
    """The package index's JSON API root, as pip knows it (e.g. ``<index>/pypi``)."""
    from pip._internal.models.index import PyPI

    return PyPI.pypi_url.rstrip("/")


def osv_query_url() -> str:
    """The OSV query endpoint pip-audit's osv service calls."""
    from pip_audit._service.osv import OsvService

    return OsvService.DEFAULT_OSV_URL


def probe_url(service: str) -> str:
    return osv_query_url() if service == "osv" else f"{index_json_api()}/pip/json"


def reachable(service: str, timeout_s: float = 5.0) -> bool:
    """True if the service's API answers at all (any HTTP status)."""
    try:
        if service == "osv":
            httpx.post(probe_url(service), json={"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "1.0"},
                       timeout=timeout_s)
        else:
            httpx.get(probe_url(service), timeout=timeout_s)
        return True
    except httpx.HTTPError:
        return False


def per_version_pages_served(timeout_s: float = 5.0) -> bool:
    """True if the index answers a per-version JSON page (what pip-audit's pypi service asks for); a mirror may not."""
    from importlib.metadata import version

    try:
        return httpx.get(f"{index_json_api()}/pip/{version('pip')}/json", timeout=timeout_s).status_code == 200
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


def _installed() -> list[tuple[str, str]]:
    """(name, version) of every distribution in this interpreter's environment, the editable project left out."""
    from importlib.metadata import distributions

    out = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        direct = dist.read_text("direct_url.json") or ""
        if name and '"editable": true' not in direct.replace("'", '"'):
            out[name.lower()] = (name, dist.version)
    return sorted(out.values())


def latest_release_check(packages: list[tuple[str, str]], workers: int = 16, timeout_s: float = 20.0) -> dict:
    """Advisories from the index's project pages (``NAME/json`` under its JSON API), which list those of the
    latest release only.

    Used where the per-version pages pip-audit asks for are not served (a registry mirror): a package
    installed at its latest release is checked for real; an older one cannot be and is listed as such.
    """
    from concurrent.futures import ThreadPoolExecutor

    from packaging.version import InvalidVersion, Version

    def one(pkg: tuple[str, str]) -> tuple[str, str, str, object]:
        name, version = pkg
        try:
            r = httpx.get(f"{index_json_api()}/{name}/json", timeout=timeout_s, follow_redirects=True)
        except httpx.HTTPError as err:
            return name, version, "error", type(err).__name__
        if r.status_code != 200:
            return name, version, "not on PyPI", r.status_code
        data = r.json()
        latest = data["info"]["version"]
        try:
            same = Version(version.split("+")[0]) == Version(latest)
        except InvalidVersion:
            same = version == latest
        return (name, version, "checked", data.get("vulnerabilities") or []) if same else \
            (name, version, "older", latest)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, packages))
    out: dict = {"checked": [], "older": [], "not on PyPI": [], "error": [], "found": []}
    for name, version, kind, extra in results:
        out[kind].append((name, version, extra))
        if kind == "checked":
            for v in extra:
                ids = ", ".join([v["id"], *v.get("aliases", [])])
                out["found"].append((name, version, ids, ", ".join(v.get("fixed_in", [])) or "no fix yet"))
    return out


def fallback(args) -> int:
    print("audit: the index's per-version pages (NAME/VERSION/json under its JSON API), which pip-audit's pypi service reads, "
          "are not served to this machine (a registry mirror), so pip-audit would find every package 'not found'.\n"
          "audit: falling back to PyPI's project pages, whose advisories cover each project's LATEST release only",
          flush=True)
    started = time.perf_counter()
    result = latest_release_check(_installed())
    report = {"source": "pypi project pages (latest release only)", **{k: result[k] for k in result}}
    args.out.write_text(json.dumps(report, indent=1, default=str))
    found = result["found"]
    print(f"audit: {len(result['checked'])} packages at their latest release checked in "
          f"{time.perf_counter() - started:.0f} s: {len(found)} known vulnerabilities; "
          f"{len(result['older'])} older than their latest release NOT checked; report {args.out}")
    for name, version, ids, fixed in found:
        print(f"  {name} {version}  {ids}  (fixed in: {fixed})")
    if result["older"]:
        print("  not checked (installed -> latest): " + ", ".join(f"{n} {v} -> {latest}"
                                                                  for n, v, latest in result["older"]))
    for kind in ("not on PyPI", "error"):
        if result[kind]:
            print(f"  {kind}: " + ", ".join(f"{n} {v}" for n, v, _ in result[kind]))
    if found and not args.fail_on_findings:
        print("audit: reported only; the build does not fail on findings")
    return 1 if found and args.fail_on_findings else 0


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
              f"{', '.join(probe_url(s) for s in (('pypi', 'osv') if args.service == 'auto' else (args.service,)))}) is unreachable from this "
              "machine; no vulnerability data was checked")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if service == "pypi" and not per_version_pages_served():
        return fallback(args)
    cmd = [sys.executable, "-m", "pip_audit", "--skip-editable", "--vulnerability-service", service, "--format", "json",
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
    if service == "pypi" and not audited and skipped and all(r.startswith(NOT_ON_PYPI) for _, r in skipped
                                                             if "editable" not in r):
        return fallback(args)
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
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - an audit that breaks reports it and never fails the build
        print(f"audit: NOT RUN, {type(exc).__name__}: {exc}")
        sys.exit(0)
