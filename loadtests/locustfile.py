"""A realistic traffic mix against a running lorafleet gateway (run headless by `make loadtest`).

What it sends, discovered from the gateway at the start (``GET /v1/models``, and
``/admin/routes`` where the key may read it):

* every route with a canary (the quickstart's ``support-intents`` at 5%) gets the most
  traffic: chat, 3 in 8 streamed, prompts from the route's example data when it has one;
* every other route: chat, 1 in 3 streamed;
* the base model under its own name: text completions, half of them streamed;
* one route without a canary (else the base) also gets text completions.

Each request carries an end-user id drawn from 10,000 (the ``user`` field), as an app
serving many people would: the gateway's sticky canary split then shows its real share.
A request fails when the status is not 200, a stream ends without ``[DONE]`` or carries an
in-band error, or a non-streamed answer has no choices. Latency is the whole exchange
(last byte of a stream), not the headers.

Settings (environment):
  LORAFLEET_API_KEY        bearer key when the gateway has a keys file (else unused)
  LOADTEST_WAIT_S          "min,max" seconds each user waits between requests (default "0.5,2")
  LOADTEST_RECORDS_CSV     where to write one line per request: start and end (wall clock), name,
                           route, variant, version, status, latency and time to first token (the canary
                           share over time is drawn from it); unset: not written
  LOADTEST_MAX_TOKENS      completion length cap (default 32; schema routes get 48)

Run by hand: ``locust -f loadtests/locustfile.py --headless -u 8 -r 2 -t 60s --host http://127.0.0.1:8000``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from locust import HttpUser, between, constant, events, task

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GENERIC_PROMPTS = [
    "Tell me about the sea.",
    "Write two sentences about a lighthouse.",
    "What is a good name for a cat?",
    "Summarise why people like trains.",
    "Give me three tips for a job interview.",
    "How do I boil an egg?",
]
COMPLETION_PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "Dear customer,"]


@dataclass
class Kind:
    """One request type of the mix: a locust stats entry of its own."""

    name: str  # e.g. "chat-stream support-intents"
    model: str
    path: str  # /v1/chat/completions or /v1/completions
    stream: bool
    weight: int
    max_tokens: int
    prompts: list = field(default_factory=list)


@dataclass
class Plan:
    kinds: list[Kind] = field(default_factory=list)
    canary_routes: dict[str, float] = field(default_factory=dict)  # route -> configured canary percent
    headers: dict[str, str] = field(default_factory=dict)

    deck: list[Kind] = field(default_factory=list)

    def pick(self) -> Kind:
        """The next request type: a shuffled deck holding each kind ``weight`` times, dealt out and
        refilled, so every run of ``sum(weights)`` requests sends exactly the configured mix (a
        plain weighted draw can skip a rare kind entirely in a short run)."""
        if not self.deck:
            self.deck = [k for k in self.kinds for _ in range(k.weight)]
            random.shuffle(self.deck)
        return self.deck.pop()


PLAN = Plan()
_records = {"file": None, "writer": None}


def _headers() -> dict[str, str]:
    key = os.environ.get("LORAFLEET_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _example_prompts(route: str) -> list[list[dict]]:
    """Chat prompts from ``examples/<route>/eval.jsonl`` (the answer turn dropped), if present."""
    path = EXAMPLES / route / "eval.jsonl"
    if not path.is_file():
        return []
    prompts = []
    for line in path.read_text().splitlines():
        if line.strip():
            messages = json.loads(line)["messages"]
            prompts.append(messages[:-1] if messages[-1]["role"] == "assistant" else messages)
    return prompts


def build_plan(host: str, headers: dict[str, str], max_tokens: int = 32) -> Plan:
    """The request mix for the gateway at ``host``, from what it serves."""
    root = host.rstrip("/").removesuffix("/v1")
    r = requests.get(f"{root}/v1/models", headers=headers, timeout=30)
    if r.status_code == 401:
        raise SystemExit("the gateway wants an API key: export LORAFLEET_API_KEY=<key> (see `platform keys add`)")
    r.raise_for_status()
    models = r.json()["data"]
    schemas: dict[str, bool] = {}
    admin = requests.get(f"{root}/admin/routes", headers=headers, timeout=30)
    if admin.status_code == 200:
        schemas = {name: bool(route.get("schema")) for name, route in admin.json().get("routes", {}).items()}
    plan = Plan(headers=headers)
    base = next((m["id"] for m in models if "versions" not in m), None)  # routes list their versions
    plain_routes = []
    for m in models:
        if m["id"] == base:
            continue
        name, versions = m["id"], m.get("versions") or {}
        chat = _example_prompts(name) or [[{"role": "user", "content": p}] for p in GENERIC_PROMPTS]
        tokens = 48 if schemas.get(name) else max_tokens
        if versions.get("canary"):
            plan.canary_routes[name] = float(versions.get("canary_weight") or 0.0)
            plan.kinds += [Kind(f"chat {name}", name, "/v1/chat/completions", False, 5, tokens, chat),
                           Kind(f"chat-stream {name}", name, "/v1/chat/completions", True, 3, tokens, chat)]
        else:
            plain_routes.append(name)
            plan.kinds += [Kind(f"chat {name}", name, "/v1/chat/completions", False, 2, tokens, chat),
                           Kind(f"chat-stream {name}", name, "/v1/chat/completions", True, 1, tokens, chat)]
    if base is not None:
        plan.kinds += [Kind(f"completion {base}", base, "/v1/completions", False, 1, max_tokens, COMPLETION_PROMPTS),
                       Kind(f"completion-stream {base}", base, "/v1/completions", True, 1, max_tokens,
                            COMPLETION_PROMPTS)]
    if plain_routes:
        plan.kinds.append(Kind(f"completion {plain_routes[0]}", plain_routes[0], "/v1/completions", False, 1,
                               max_tokens, COMPLETION_PROMPTS))
    if not plan.kinds:
        raise SystemExit(f"the gateway at {root} serves no model")
    return plan


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    plan = build_plan(environment.host, _headers(), int(os.environ.get("LOADTEST_MAX_TOKENS", "32")))
    PLAN.kinds, PLAN.canary_routes, PLAN.headers = plan.kinds, plan.canary_routes, plan.headers
    print("loadtest mix: " + ", ".join(f"{k.name} x{k.weight}" for k in PLAN.kinds))
    for route, weight in PLAN.canary_routes.items():
        print(f"loadtest canary: {route} at {weight:g}%")
    path = os.environ.get("LOADTEST_RECORDS_CSV")
    if path:
        f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed at test_stop
        _records["file"], _records["writer"] = f, csv.writer(f)
        _records["writer"].writerow(["t", "t_end", "name", "route", "variant", "version", "status", "latency_s",
                                     "ttft_s"])


@events.test_stop.add_listener
def _on_test_stop(**_kwargs) -> None:
    if _records["file"] is not None:
        _records["file"].close()
        _records["file"] = _records["writer"] = None


def _record(kind: Kind, headers, status: int, started: float, latency_s: float, ttft_s: float | None) -> None:
    if _records["writer"] is not None:
        _records["writer"].writerow([f"{started:.6f}", f"{time.time():.6f}", kind.name, kind.model,
                                     headers.get("x-lorafleet-variant", ""), headers.get("x-lorafleet-version", ""),
                                     status, f"{latency_s:.4f}", "" if ttft_s is None else f"{ttft_s:.4f}"])
        _records["file"].flush()  # read while the run goes on, for progress


def _wait() -> object:
    low, _, high = os.environ.get("LOADTEST_WAIT_S", "0.5,2").partition(",")
    return constant(float(low)) if not high or float(high) <= float(low) else between(float(low), float(high))


class GatewayUser(HttpUser):
    """A client app calling the gateway on behalf of many end users."""

    wait_time = _wait()

    @task
    def one_request(self) -> None:
        kind = PLAN.pick()
        prompt = random.choice(kind.prompts)
        body = {"model": kind.model, "max_tokens": kind.max_tokens, "temperature": 0.7,
                "user": f"user-{random.randrange(10_000)}", "stream": kind.stream}
        body["messages" if kind.path.endswith("chat/completions") else "prompt"] = prompt
        started_wall, started = time.time(), time.perf_counter()
        with self.client.post(kind.path, json=body, headers=PLAN.headers, name=kind.name, stream=kind.stream,
                              catch_response=True, timeout=180) as resp:
            ttft = None
            problem = None
            size = 0
            try:
                if resp.status_code != 200:
                    problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
                elif kind.stream:
                    done = False
                    for line in resp.iter_lines():
                        size += len(line)
                        if not line.startswith(b"data: "):
                            continue
                        data = line[6:]
                        if data == b"[DONE]":
                            done = True
                        elif b'"error"' in data and "error" in json.loads(data):
                            problem = f"in-band error: {data[:200].decode(errors='replace')}"
                        elif ttft is None:
                            ttft = time.perf_counter() - started
                    if problem is None and not done:
                        problem = "stream ended without [DONE]"
                else:
                    size = len(resp.content)
                    if not resp.json().get("choices"):
                        problem = "answer without choices"
            except (requests.RequestException, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            latency = time.perf_counter() - started
            resp.request_meta["response_time"] = latency * 1000  # the whole exchange, not just the headers
            resp.request_meta["response_length"] = size
            if problem:
                resp.failure(problem)
            else:
                resp.success()
            _record(kind, resp.headers, resp.status_code, started_wall, latency, ttft)
