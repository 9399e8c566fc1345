"""The gate of `platform promote`.

A version is refused when its training-time gate failed (it was pushed with --force), when
the suite results stored in its manifest fail the suite thresholds of its training config
(``gate.suites``), or when its golden-set pass rate falls below the route's stable version's;
a golden score that comparison needs and cannot find refuses too (never a silent pass). With a gateway
running, the golden set is sent through the gateway itself (version pinned with the
``X-Lorafleet-Version`` header, so validators and adapter loading are the serving path);
without one, the pass rates recorded at training time are compared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lorafleet.core.fsutil import sha256_file
from lorafleet.core.settings import Settings
from lorafleet.platform.errors import PlatformError

__all__ = ["golden_gate", "run_golden", "compare_golden", "stored_suite_checks", "wait_for_route"]


def _golden_rows(manifest) -> tuple[list[list[dict]], list[str]] | None:
    """Prompts and reference answers of the version's golden set, if the file is here unchanged."""
    import json

    data = (manifest.training_config or {}).get("data") or {}
    path = data.get("golden")
    if not path or not Path(path).is_file():
        return None
    if manifest.dataset_sha256.get("golden") not in (None, sha256_file(path)):
        raise PlatformError(f"{manifest.ref}: golden set {path} changed since training (sha256 differs)")
    prompts, refs = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            messages = json.loads(line)["messages"]
            prompts.append(messages[:-1])
            refs.append(messages[-1]["content"])
    return prompts, refs


def run_golden(gateway_url: str, route: str, version: str | None, manifest, admin_key: str | None = None) -> float:
    """Golden pass rate of ``version`` (None: the route's base) through the gateway."""
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    from lorafleet.training.scoring import score_answers

    rows = _golden_rows(manifest)
    if rows is None:
        raise PlatformError(f"{manifest.ref}: its golden set is not available here")
    prompts, refs = rows
    ev = (manifest.training_config or {}).get("eval") or {}
    client = OpenAI(base_url=f"{gateway_url}/v1", api_key=admin_key or "unused", max_retries=2, timeout=300)
    headers = {"X-Lorafleet-Version": version} if version else {}

    def one(messages: list[dict]) -> str:
        r = client.chat.completions.create(model=route, messages=messages, temperature=0.0,
                                           max_tokens=int(ev.get("max_new_tokens") or 64), extra_headers=headers)
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, prompts))
    return float(score_answers(answers, refs, None, [])["pass_rate"])


def wait_for_route(gateway_url: str, route: str, admin_key: str | None = None, timeout_s: float = 10.0) -> None:
    """Wait until the gateway serves ``route`` (it applies a routes-file edit within a second)."""
    import time

    import httpx

    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            r = httpx.get(f"{gateway_url}/v1/models", headers=headers, timeout=5)
            if r.status_code == 200 and any(m.get("id") == route for m in r.json().get("data", [])):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise PlatformError(f"the gateway at {gateway_url} does not serve route {route!r} "
                                f"{timeout_s:.0f}s after it was written to the routes file; see its log")
        time.sleep(0.2)


def _recorded_golden(manifest, which: str = "adapter") -> float | None:
    ev = manifest.eval_metrics or {}
    return ((ev.get(which) or {}).get("golden") or {}).get("pass_rate")


def _has_golden(manifest) -> bool:
    """Whether the version was trained with a golden set (its config names one, or its report scored one)."""
    data = (manifest.training_config or {}).get("data") or {}
    ev = manifest.eval_metrics or {}
    return bool(data.get("golden")) or any("golden" in (ev.get(w) or {}) for w in ("adapter", "base"))


def compare_golden(ref: str, mine: float | None, theirs: float | None, label: str) -> None:
    """Refuse ``ref`` when its golden pass rate is below ``label``'s, or when either score is missing."""
    missing = [who for who, v in ((f"{ref}'s", mine), (f"{label}'s", theirs)) if v is None]
    if missing:
        raise PlatformError(f"golden gate: {' and '.join(missing)} golden pass rate is missing, so {ref} cannot be "
                            f"compared with {label} (eval_metrics.<adapter|base>.golden.pass_rate in the manifest; "
                            f"with a gateway running, promote measures it through the gateway)")
    if mine < theirs:
        raise PlatformError(f"{ref} passes {mine:.1%} of its golden set, below {label} ({theirs:.1%})")


def stored_suite_checks(manifest) -> list:
    """The gate.suites thresholds of the version's training config, re-applied to its stored suite results."""
    from pydantic import ValidationError

    from lorafleet.training.config import GateSettings
    from lorafleet.training.gate import suite_checks

    gate_cfg = (manifest.training_config or {}).get("gate") or {}
    if not gate_cfg.get("suites"):
        return []
    try:
        settings = GateSettings.model_validate(gate_cfg)
    except ValidationError as err:
        raise PlatformError(f"{manifest.ref}: its recorded gate settings no longer validate "
                            f"({err.error_count()} problems): retrain it or promote with --force") from None
    ev = manifest.eval_metrics or {}
    adapter, base = ev.get("adapter") or {}, ev.get("base") or {}
    return [c for name, sg in settings.suites.items() for c in suite_checks(name, sg, adapter.get(name), base.get(name))]


def golden_gate(settings: Settings, gateway_url: str | None = None, admin_key: str | None = None,
                say: Callable[[str], None] = lambda _m: None) -> Callable[[str, str], None]:
    """gate(ref, route): raise PlatformError when ``ref`` must not be promoted on ``route``: its training
    gate failed, its stored suite results fail their thresholds, its golden pass rate is below the
    route's stable version's (or the base's), or a golden score needed for that comparison is missing."""

    def gate(ref: str, route: str) -> None:
        from lorafleet.registry import open_registry
        from lorafleet.serving.routes import is_base_ref
        from lorafleet.serving.pidfile import read_pid_file

        reg = open_registry(settings)
        m = reg.resolve(ref)
        if m.gate is not None and not m.gate.get("passed", True):
            failed = [c["name"] for c in m.gate.get("checks", []) if not c.get("passed")]
            raise PlatformError(f"{m.ref} failed its evaluation gate at training ({', '.join(failed) or 'see manifest'})")
        checks = stored_suite_checks(m)
        if any(not c.passed for c in checks):
            raise PlatformError(f"{m.ref}: its suite results recorded at training fail their gate: "
                                + "; ".join(c.describe() for c in checks if not c.passed))
        if checks:
            say(f"suite gate on the results recorded at training: {len(checks)} checks passed "
                f"({', '.join(sorted({c.name.partition('.')[0] for c in checks}))})")
        if not _has_golden(m):
            say(f"golden gate: {m.ref} was trained without a golden set (data.golden): no golden comparison")
            return
        from lorafleet.serving.routes_source import load_routes, open_routes

        current = load_routes(open_routes(settings)).routes.get(route)
        stable = current.stable if current else None
        url = gateway_url
        if url is None:
            record = read_pid_file(settings)
            url = record["url"].removesuffix("/v1") if record else None
        if url is not None and _golden_rows(m) is not None:
            model = route if current is not None else m.base.name  # a new route: pin through the base
            wait_for_route(url, model, admin_key)  # a route written a moment ago may not be applied yet
            mine = run_golden(url, model, m.ref, m, admin_key)
            if stable is None or is_base_ref(stable):
                theirs = _recorded_golden(m, "base")
                label = "the base model (recorded at training)"
                if theirs is None:  # not evaluated at training: measure the base now, on the same path
                    theirs = run_golden(url, m.base.name, None, m, admin_key)
                    label = "the base model (through the gateway)"
            else:
                theirs = run_golden(url, model, stable, m, admin_key)
                label = stable
            say(f"golden set through the gateway: {m.ref} {mine:.1%}, {label} {theirs:.1%}")
        else:
            mine = _recorded_golden(m)
            if stable and not is_base_ref(stable):
                theirs, label = _recorded_golden(reg.resolve(stable)), stable
            else:
                theirs, label = _recorded_golden(m, "base"), "the base model"
            shown = (lambda v: "missing" if v is None else f"{v:.1%}")
            say(f"golden pass rate recorded at training: {m.ref} {shown(mine)}, {label} {shown(theirs)}")
        compare_golden(m.ref, mine, theirs, label)

    return gate
