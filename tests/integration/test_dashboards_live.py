"""The Grafana dashboards and the alert rules in deploy/, proven against real data.

A real Prometheus (Debian's package), configured from deploy/prometheus/prometheus.yml with a
1 s scrape interval, scrapes a real gateway and its real vLLM engine (tiny base) while the
official openai client drives traffic that covers what the dashboards show: a route with a
stable and a 50% canary version, a JSON schema and a price; a route whose schema rejects
(422s); an adapter fingerprinted for drift (token-length histograms and an embedding
centroid, with the gateway's embedding drift on); the base model; two tenants; streaming and
not; adapter loads. Then every panel of every dashboard JSON in deploy/grafana/dashboards is
evaluated through Prometheus' HTTP API: each returns data with at least one finite value, and
names no metric Prometheus does not know. The alert rules in deploy/prometheus/rules load and
evaluate there, and `platform dashboard` draws the panels to PNG from this Prometheus.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import openai
import pytest
import yaml
from openai import OpenAI

from lorafleet.embedding.minilm import EMBEDDING_DIM, EMBEDDING_MODEL
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from lorafleet.serving.tenants import KeysFile, hash_key, new_key
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread
from tests.integration.prometheus_harness import PROMETHEUS, PrometheusServer
from tests.metrics_text import samples, scrape

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is installed by `make setup`")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCHEMA = {"type": "object", "required": ["intent"], "properties": {"intent": {"enum": ["refund", "other"]}}}
ROUTE = "dash"  # the route the canary dashboard's $route is set to
ROUNDS = 3  # traffic rounds, each followed by a scrape: every series gets at least two samples that differ

# Grafana's variables, as a person looking at the last few minutes would have them
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m", "${route}": ROUTE,
                "$route": ROUTE}

# PromQL words that look like metric names but are not
PROMQL_WORDS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
                "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels, durations left out)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range and subquery durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.:])[a-zA-Z_:][\w:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue  # a function or aggregation call, or a keyword
        names.add(m.group())
    return names


def test_metric_name_parser() -> None:
    expr = ('histogram_quantile(0.95, sum by (route, le) (rate(lorafleet_request_duration_seconds_bucket'
            '{route="$route", status=~"5..|422"}[5m]))) / on(route) group_left sum(vllm:num_requests_running) '
            'or sum(rate(x_total[1m] offset 5m)) by (job) * 1e3')
    assert metric_names(expr) == {"lorafleet_request_duration_seconds_bucket", "vllm:num_requests_running",
                                  "x_total"}


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def dashboards() -> dict[str, dict]:
    files = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert files, "no dashboards in deploy/grafana/dashboards"
    return {p.stem: json.loads(p.read_text()) for p in files}


def rule_files() -> list[Path]:
    files = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert files
    return files


def prometheus_config(gateway_hostport: str, engine_hostport: str) -> dict:
    """deploy/prometheus/prometheus.yml, pointed at this test's gateway and engine, scraping every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rule_files()]
    targets = {"lorafleet-gateway": gateway_hostport, "vllm": engine_hostport}
    assert {j["job_name"] for j in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@pytest.fixture(scope="module")
def refs(settings, tiny_base, engine, tmp_path_factory) -> dict[str, str]:
    from lorafleet.registry import open_registry
    from lorafleet.registry.fingerprint import TOKEN_LENGTH_EDGES, histogram

    reg = open_registry(settings)
    base_dir = settings.layout.base(TINY_BASE)
    out = {}
    for key, name, seed in (("stable", "dash", 31), ("canary", "dash", 32)):
        out[key] = reg.push(make_lora_adapter(base_dir, tmp_path_factory.mktemp(key), r=4, seed=seed), name,
                            tiny_base).ref
    fingerprint = {"rows": 100, "features": {
        "prompt_tokens": {"edges": TOKEN_LENGTH_EDGES, "counts": histogram([20] * 50 + [40] * 50, TOKEN_LENGTH_EDGES)},
        "completion_tokens": {"edges": TOKEN_LENGTH_EDGES, "counts": histogram([4] * 100, TOKEN_LENGTH_EDGES)}},
        # a made-up centroid is enough: the panel shows a distance, its size is another test's subject
        "embedding_model": EMBEDDING_MODEL, "embedding_rows": 100,
        "embedding_centroid": [EMBEDDING_DIM ** -0.5] * EMBEDDING_DIM}
    out["drift"] = reg.push(make_lora_adapter(base_dir, tmp_path_factory.mktemp("drift"), r=4, seed=33),
                            "dash-drift", tiny_base, lineage={"fingerprint": fingerprint}).ref
    return out


@pytest.fixture(scope="module")
def live(settings, engine, refs, tmp_path_factory):
    """(Prometheus, gateway) after ROUNDS rounds of traffic, each scraped."""
    folder = tmp_path_factory.mktemp("dash")
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    price = {"input_usd_per_million": 1.0, "output_usd_per_million": 2.0}
    RoutesFile.from_mapping({"routes": {
        ROUTE: {"stable": refs["stable"], "canary": {"version": refs["canary"], "weight": 50},
                "schema": "schema.json", "validator": "validate", "price": price},
        "dash-strict": {"stable": refs["stable"], "schema": "schema.json", "validator": "reject"},
        "dash-drift": {"stable": refs["drift"]},
    }}).save(folder / "routes.yaml")
    keys = KeysFile()
    key = {"acme": keys.add_key("acme", [ROUTE, "dash-strict", "dash-drift", TINY_BASE]),
           "globex": keys.add_key("globex", [ROUTE, "dash-drift"])}
    keys.admin_keys = [hash_key(new_key())]
    (folder / "keys.yaml").write_text(keys.to_yaml())
    gateway = build_gateway(settings, TINY_BASE, [engine.root_url], folder / "routes.yaml",
                            keys_file=folder / "keys.yaml", drift_window=50, drift_min_samples=10,
                            embedding_drift=True, embedding_drift_sample_every=1, embedding_drift_min_samples=5)
    with GatewayThread(gateway) as gw:
        config = prometheus_config(f"127.0.0.1:{gw.port}", engine.root_url.removeprefix("http://"))
        with PrometheusServer(config, folder) as prom:
            prom.wait_scraped_after(time.time())  # a scrape before any traffic: histograms start at zero
            clients = {t: OpenAI(base_url=gw.url, api_key=k, max_retries=0) for t, k in key.items()}
            streamers: dict[str, list[str]] = {}
            for i in range(ROUNDS):
                drive(clients, streamers, i)
                prom.wait_scraped_after(time.time())
            wait_for_gauge(gw, "lorafleet_drift_embedding_distance")  # embedded behind the requests
            prom.wait_scraped_after(time.time())
            yield prom, gw


def wait_for_gauge(gw: GatewayThread, name: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if samples(scrape(gw.root_url), name):
            return
        time.sleep(0.5)
    raise AssertionError(f"the gateway never exported {name}")


def drive(clients: dict[str, OpenAI], streamers: dict[str, list[str]], round_no: int) -> None:
    """One round of traffic; ``streamers`` (variant -> users) is learnt in the first round."""
    msg = [{"role": "user", "content": f"Where is my refund? (round {round_no})"}]
    for tenant, client in clients.items():
        for u in range(8):
            user = f"{tenant}-u{u}"
            raw = client.chat.completions.with_raw_response.create(model=ROUTE, messages=msg, max_tokens=8, user=user)
            assert raw.status_code == 200
            streamers.setdefault(raw.headers["x-lorafleet-variant"], []).append(user)
    assert set(streamers) == {"stable", "canary"}, streamers
    acme = clients["acme"]
    for variant in ("stable", "canary"):
        for user in streamers[variant][:2]:
            stream = acme.chat.completions.create(model=ROUTE, messages=msg, max_tokens=8, user=user, stream=True)
            assert any(c.choices and c.choices[0].delta.content for c in stream)
    acme.completions.create(model=ROUTE, prompt="My refund", max_tokens=6, user="acme-u0")
    for _ in range(2):  # gibberish is never the schema's JSON: 422
        with pytest.raises(openai.UnprocessableEntityError):
            acme.chat.completions.create(model="dash-strict", messages=msg, max_tokens=8)
    for i in range(5):
        clients["globex"].chat.completions.create(
            model="dash-drift", max_tokens=4, messages=[{"role": "user", "content": "refund " * (5 + 10 * i)}])
    acme.chat.completions.create(model=TINY_BASE, messages=msg, max_tokens=4)


def test_every_panel_returns_data_and_names_only_known_metrics(live) -> None:
    prom, _gw = live
    known = set(prom.api("label/__name__/values"))
    problems, evaluated = [], 0
    for uid, dash in dashboards().items():
        for var in dash.get("templating", {}).get("list", []):
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
            assert m, f"{uid}: variable {var['name']}: a query this test cannot evaluate: {var['definition']}"
            values = prom.api(f"label/{m[2]}/values", **{"match[]": m[1]})
            if ROUTE not in values:
                problems.append(f"{uid}: variable ${var['name']} offers {values}, not {ROUTE}")
        for panel in dash["panels"]:
            targets = panel.get("targets", [])
            if not targets:
                problems.append(f"{uid} / {panel['title']}: no query")
            for target in targets:
                expr = substitute(target["expr"])
                where = f"{uid} / {panel['title']}: {expr}"
                names = metric_names(expr)
                if not names:
                    problems.append(f"{where}: names no metric")
                if unknown := names - known:
                    problems.append(f"{where}: unknown to Prometheus: {sorted(unknown)}")
                result = prom.query(expr)
                evaluated += 1
                if not result:
                    problems.append(f"{where}: no data")
                elif not any(math.isfinite(float(s["value"][1])) for s in result):
                    problems.append(f"{where}: only NaN/Inf: {[s['value'][1] for s in result]}")
    assert evaluated >= 20, evaluated
    assert not problems, "\n".join(problems)


def test_alert_rules_load_and_evaluate_in_prometheus(live) -> None:
    prom, _gw = live
    alerts_in_files = sum(len(re.findall(r"^\s*- alert: ", p.read_text(), re.M)) for p in rule_files())
    deadline = time.monotonic() + 20
    while True:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == alerts_in_files and alerts_in_files >= 6, (len(rules), alerts_in_files)
    assert {g["file"] for g in groups} == {str(p) for p in rule_files()}
    assert not bad, bad


def test_platform_dashboard_draws_every_dashboard_from_prometheus(live, tmp_path) -> None:
    import matplotlib.image
    from typer.testing import CliRunner

    from lorafleet.platform.cli import app

    prom, _gw = live
    out = tmp_path / "png"
    result = CliRunner().invoke(app, ["dashboard", "--out", str(out), "--prometheus", prom.url, "--route", ROUTE,
                                      "--minutes", "5"])
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert {p.stem for p in pngs} == set(dashboards())
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, png
        rgb = matplotlib.image.imread(png)[..., :3]
        colored = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25  # data lines; axes and text are grey
        assert colored.mean() > 0.001, f"{png.name}: no data drawn ({colored.mean():.5f} colored)"
