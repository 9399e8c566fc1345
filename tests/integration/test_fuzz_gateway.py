"""schemathesis against the gateway's own OpenAPI document, whose request bodies are the
models the gateway validates with (chat with every role, text parts and tools; completions;
responses): at least 1,000 generated requests (valid and invalid), none answered with a
server error, every 4xx in OpenAI's shape, and the gateway's refusals naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorafleet.serving.gateway import Gateway, GatewayConfig
from tests.conftest import TINY_BASE
from tests.integration.gateway_harness import GatewayThread

ST = str(Path(sys.executable).with_name("st"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gw(engine, tmp_path_factory):
    routes = tmp_path_factory.mktemp("fuzz") / "routes.yaml"
    routes.write_text(f"routes:\n  chat:\n    stable: {TINY_BASE}\n")
    with GatewayThread(Gateway(GatewayConfig(engine_urls=[engine.root_url], routes_file=routes),
                               resolve_path=None, base_name=TINY_BASE)) as thread:
        yield thread


def test_the_published_schema_has_the_wide_shapes(gw) -> None:
    import httpx

    doc = httpx.get(f"{gw.root_url}/openapi.json", timeout=10).json()
    schemas = doc["components"]["schemas"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/responses"} <= set(doc["paths"])
    roles = {s["properties"]["role"].get("const") for n, s in schemas.items() if n.endswith("Message")
             and n != "InputMessage"}
    assert {"developer", "tool", "function"} <= roles and "TextPart" in schemas and "Tool" in schemas


def test_schemathesis_finds_no_server_errors(gw, tmp_path: Path) -> None:
    report = tmp_path / "events.ndjson"
    result = subprocess.run(
        [ST, "run", f"{gw.root_url}/openapi.json", "--checks", "not_a_server_error,openai_error_names_the_field",
         "--max-examples", "400",
         "--mode", "all", "--seed", "1", "--phases", "examples,coverage,fuzzing",
         "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_checks"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cases = 0
    statuses: dict[int, int] = {}
    for line in report.read_text().splitlines():
        event = json.loads(line)
        for rec in _interactions(event):
            cases += 1
            statuses[rec] = statuses.get(rec, 0) + 1
    print(f"schemathesis: {cases} requests, statuses {dict(sorted(statuses.items()))}")
    assert cases >= 1000, statuses
    assert not any(500 <= s < 600 for s in statuses), statuses


def _interactions(event, found=None) -> list[int]:
    """Every HTTP status code recorded anywhere in one ndjson event."""
    found = [] if found is None else found
    if isinstance(event, dict):
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int) and "request" in event:
            found.append(response["status_code"])
        for v in event.values():
            _interactions(v, found)
    elif isinstance(event, list):
        for v in event:
            _interactions(v, found)
    return found
