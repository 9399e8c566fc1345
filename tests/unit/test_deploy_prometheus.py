"""deploy/prometheus: the scrape config and alert rules are valid, and each alert's unit
tests (firing and not firing on synthetic series) pass under the real promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is installed by `make setup`")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=DEPLOY, timeout=60)


def test_config_and_rules_check() -> None:
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "rules", "rules/lorafleet.rules.yml")
    assert r.returncode == 0 and "SUCCESS: 7 rules found" in r.stdout, r.stdout + r.stderr


def test_rule_unit_tests_pass() -> None:
    r = promtool("test", "rules", "tests/lorafleet.rules.test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = (DEPLOY / "rules" / "lorafleet.rules.yml").read_text()
    tests = (DEPLOY / "tests" / "lorafleet.rules.test.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    assert alerts and alerts <= set(re.findall(r"alertname: (\w+)", tests))


def test_rules_only_name_metrics_the_gateway_declares() -> None:
    from lorafleet.serving.metrics import GatewayMetrics

    declared = {m.name for m in GatewayMetrics().registry.collect()}
    rules = (DEPLOY / "rules" / "lorafleet.rules.yml").read_text()
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in re.findall(r"\b(lorafleet_[a-z_]+)", rules)}
    assert used <= declared, used - declared
