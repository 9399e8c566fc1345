"""The quickstart (README command 1): the whole platform loop on the real SmolLM2 base.

base pull (the settings' default base) -> serve in the background -> platform train (support-intents),
evaluated on the engine the server started (one engine start, not two; it starts while the Ray job
trains, and the evaluation waits for it) -> promote with a 5% canary ->
mixed traffic with the openai client -> status table and a plot of canary vs stable -> how to roll
back and how to stop. Each step prints what it does and its time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lorafleet.core.settings import Settings

__all__ = ["run_quickstart", "EXAMPLE", "QUICK_OVERRIDES", "ROUTE"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"
ROUTE = "support-intents"
# The quickstart shows the whole loop in minutes: a short run of the example's recipe (60 of its 385
# steps) scored on the first 50 rows of each set. `platform train` on the same file runs it in full.
QUICK_OVERRIDES = ("max_steps=60", "eval.max_rows=50")
# Step 5's concurrency: bounded, so its latencies show the service and not a client queue; 16 streams
# answered the base's 80 requests in 38 s against 54 s at 8 on the AVX2 machine (vLLM batches them).
TRAFFIC_STREAMS = 16


def _traffic(url: str, route: str, requests: int, prompts: list[list[dict]], say, max_tokens: int = 32) -> dict:
    """Mixed traffic from distinct users, streaming and not; returns what the client saw."""

    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
    seen: dict[str, int] = {}
    failures: list[str] = []

    def one(i: int) -> None:
        messages = prompts[i % len(prompts)]
        try:
            if i % 4 == 0:
                for _ in client.chat.completions.create(model=route, messages=messages, max_tokens=max_tokens,
                                                        temperature=0, user=f"user-{i}", stream=True):
                    pass
                variant = "stream"
            else:
                raw = client.chat.completions.with_raw_response.create(model=route, messages=messages, max_tokens=max_tokens,
                                                                       temperature=0, user=f"user-{i}")
                variant = raw.headers["x-lorafleet-variant"]
            seen[variant] = seen.get(variant, 0) + 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            failures.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=TRAFFIC_STREAMS) as pool:
        list(pool.map(one, range(requests)))
    return {"seen": seen, "failures": failures}


def _serving_engine(gateway_root: str, base: str) -> str | None:
    """The root URL of a healthy engine behind the gateway that serves ``base``, from its /admin/engines
    (None where the gateway does not say, e.g. tenant keys without an admin one: training then starts its own)."""
    import httpx

    try:
        engines = httpx.get(f"{gateway_root}/admin/engines", timeout=10).raise_for_status().json()["engines"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return next((e["url"] for e in engines if e.get("healthy") and e.get("base") == base), None)


def _plot(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['variant']}\n{r['version']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].bar(labels, [1 - (r["schema_failure_rate"] or 0) if r["requests"] else 0 for r in rows],
                color=["tab:blue", "tab:orange"][: len(rows)])
    axes[0].set(title="schema pass rate", ylim=(0, 1.05))
    axes[1].bar(labels, [r["p95_latency_s"] or 0 for r in rows], color=["tab:blue", "tab:orange"][: len(rows)])
    axes[1].set(title="p95 latency (s, histogram bucket bound)")
    for ax, key in zip(axes, ("requests", "requests"), strict=True):
        for i, r in enumerate(rows):
            ax.annotate(f"n={r[key]}", (i, 0), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{ROUTE}: canary vs stable")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def run_quickstart(settings: Settings, say: Callable[[str], None] = print, overrides: tuple[str, ...] = (),
                   requests: int = 200, canary_percent: float = 5.0, port: int = 8000) -> dict:
    """Run the loop; the server stays up (stop it with `platform stop`). Returns a summary."""
    import json

    from lorafleet.platform.base_pull import pull_base
    from lorafleet.platform.control.gates import golden_gate
    from lorafleet.platform.control.promotion import Promoter
    from lorafleet.platform.control.routes_edit import edit_route
    from lorafleet.platform.control.status import collect_status, render_status
    from lorafleet.serving.routes import Route
    from lorafleet.serving.server import check_port_free, read_pid_file, serve_detached
    from lorafleet.training.config import load_train_config
    from lorafleet.training.pipeline import comparison_rows, run_pipeline

    base = settings.default_base
    t0 = time.perf_counter()
    clock = lambda: f"[{time.perf_counter() - t0:6.0f}s]"  # noqa: E731

    record = read_pid_file(settings)
    if record is None:
        check_port_free("127.0.0.1", port)  # now, not minutes later when the background start fails
    say(f"{clock()} 1/6 base pull {base} (home: {settings.home})")
    manifest, created = pull_base(settings, base, progress=lambda m: say(f"         {m}"))
    say(f"         {'pulled' if created else 'already present'}: {manifest.parameter_count / 1e6:.1f}M params")

    say(f"{clock()} 2/6 platform serve --detach (its engine starts while step 3 trains)")
    starting = None
    if record is None:
        starting = ThreadPoolExecutor(1).submit(serve_detached, settings, base, "127.0.0.1", port, [])
    serving: dict = {}

    def serving_engine() -> str | None:
        """Wait for the server (re-raising its start-up error); the root URL of its engine."""
        if not serving:
            serving.update(record or starting.result())
            serving["engine"] = _serving_engine(serving["url"].removesuffix("/v1"), base)
            say(f"{clock()}       server ready: gateway {serving['url']} -> engine {serving['engine'] or '?'} "
                f"(log {serving['log']})")
        return serving["engine"]

    example = EXAMPLE.relative_to(EXAMPLE.parents[2])
    quick = (*QUICK_OVERRIDES, *overrides)
    say(f"{clock()} 3/6 platform train {example} --set {' --set '.join(quick)}, evaluated on the serving engine")
    say(f"         a short run; `platform train {example}` trains the full recipe (11-15 min on 2 AVX512-BF16 cores)")
    cfg = load_train_config(EXAMPLE, list(quick))  # the caller's overrides win

    def trained() -> str | None:
        """After the Ray job: stop the embedded Ray (its idle daemons took 7% of a core through evaluation
        and traffic), then evaluate on the serving engine: one engine start instead of two."""
        import ray

        ray.shutdown()
        return None if cfg.eval.engine_url else serving_engine()

    result = run_pipeline(cfg, settings, force=True, say=say, eval_engine=trained)
    serving_engine()
    url = serving["url"]
    for metric, before, after in comparison_rows(result.evaluation, result.train_metrics):
        say(f"         {metric:<28} base {before:>7}   adapter {after:>7}")
    if not result.gate.get("passed"):
        say("         the gate failed; the quickstart pushed it anyway (--force, recorded in the manifest)")
    ref = result.ref

    say(f"{clock()} 4/6 platform promote {ref} --canary {canary_percent:g}%")
    schema = str(cfg.eval.schema_path) if cfg.eval.schema_path else None

    def first_route(current: Route | None) -> Route:  # the route's guardrails, before the canary
        if current is not None:
            return current
        return Route.model_validate({"stable": base, "schema": schema, "validator": "validate"}
                                    if schema else {"stable": base})

    edit_route(settings.layout.routes_file, ROUTE, first_route, actor="quickstart", reason="quickstart route",
               kind="create")
    gate = golden_gate(settings, gateway_url=url.removesuffix("/v1"), say=lambda m: say(f"         {m}"))
    promoter = Promoter(settings, base, actor="quickstart", gate=gate)
    change = promoter.canary(ref, canary_percent, route=ROUTE, reason="quickstart canary",
                             force=not result.gate.get("passed"))
    say("\n".join("         " + line for line in change.diff.splitlines()))
    time.sleep(1.0)  # the gateway applies a routes change within a second

    say(f"{clock()} 5/6 {requests} requests from distinct users with the openai client (1 in 4 streamed)")
    prompts = [json.loads(line)["messages"][:-1] for line in Path(cfg.data.eval).read_text().splitlines()
               if line.strip()]
    traffic = _traffic(url, ROUTE, requests, prompts, say, max_tokens=cfg.eval.max_new_tokens)
    say(f"         variants seen: {traffic['seen']}; failed requests: {len(traffic['failures'])}")

    say(f"{clock()} 6/6 platform status")
    rows = collect_status(settings.layout.routes_file, url.removesuffix("/v1"))
    render_status([r for r in rows if r["route"] == ROUTE], f"routes: {settings.layout.routes_file}")
    plot = _plot([r for r in rows if r["route"] == ROUTE], settings.layout.root / "quickstart-canary.png")
    say(f"         plot: {plot}")
    say(f"quickstart done in {time.perf_counter() - t0:.0f}s. The gateway is still running at {url}:")
    say(f"  roll back:   platform rollback {ROUTE}      (or delete the canary block in {settings.layout.routes_file})")
    say(f"  go full:     platform promote {ROUTE} --full")
    say("  stop:        platform stop                  (or make stop)")
    return {"ref": ref, "url": url, "traffic": traffic, "rows": rows, "plot": str(plot),
            "seconds": time.perf_counter() - t0}
