"""The dependency audit (scripts/audit.py): it reports, it never fails the build on findings,
and it says so plainly when the vulnerability service cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"


def test_unreachable_service_is_reported_and_does_not_fail(tmp_path: Path) -> None:
    # a proxy on a closed loopback port: every request fails as it would with no network
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    r = subprocess.run([sys.executable, str(SCRIPT), "--service", "auto", "--out", str(tmp_path / "a.json")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SKIPPED" in r.stdout and "unreachable" in r.stdout, r.stdout


def test_findings_are_listed_with_their_fixes() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from audit import summarise_report
    finally:
        sys.path.remove(str(SCRIPT.parent))
    report = {"dependencies": [
        {"name": "good", "version": "1.0", "vulns": []},
        {"name": "bad", "version": "2.0", "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["2.1"]},
                                                    {"id": "GHSA-x", "aliases": [], "fix_versions": []}]},
        {"name": "torch", "skip_reason": "Dependency not found on PyPI"},
    ]}
    found, skipped, audited = summarise_report(report)
    assert audited == 2
    assert found == [("bad", "2.0", "PYSEC-1, CVE-1", "2.1"), ("bad", "2.0", "GHSA-x", "no fix yet")]
    assert skipped == [("torch", "Dependency not found on PyPI")]
