"""Evaluation on the real vLLM engine (what serving runs): on ONE engine start, the base and the
candidate adapter answer every evaluation set of the config (held-out, golden and each suite of
``eval.suites``) with greedy, unconstrained decoding; :mod:`lorafleet.training.suites` scores the
answers. The base's scores are cached per base identity, set file hash and scoring settings, one
cache file per set under ``$HOME/cache/eval``, so adding a suite scores only that suite on the base.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_bytes
from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import TrainingError
from lorafleet.training.scoring import cannot_become_json, parse_json
from lorafleet.training.suites import EvalSet, load_eval_sets, score_set

__all__ = ["EvalSet", "load_eval_sets", "generate_answers", "evaluate_on_engine", "run_evaluation", "CANDIDATE",
           "base_cache_path", "check_eval_engine", "json_early_stop"]

CANDIDATE = "candidate"
CACHE_VERSION = 2  # bump when a scorer changes what it reports


def generate_answers(base_url: str, model: str, prompts: list[list[dict]], max_tokens: int,
                     concurrency: int = 32, api_key: str | None = None,
                     stop_when: Callable[[str], bool] | None = None, stop_rows: list[bool] | None = None) -> list[str]:
    """Greedy chat completions through the engine's OpenAI API (the official client).

    With ``stop_when``, the rows marked in ``stop_rows`` (all rows if None) are streamed and closed as
    soon as ``stop_when(text so far)`` is true; the engine aborts a request whose stream is closed, so
    an answer that cannot score (e.g. :func:`~lorafleet.training.scoring.cannot_become_json`) costs a
    token or two instead of ``max_tokens``. The answer returned is the text up to that point."""
    return _answer_rows(base_url, _rows(model, prompts, max_tokens, stop_when, stop_rows), concurrency, api_key)


def _rows(model: str, prompts: list[list[dict]], max_tokens: int, stop_when: Callable[[str], bool] | None = None,
          stop_rows: list[bool] | None = None) -> list[tuple]:
    """(model, messages, max_tokens, stop_when or None) per prompt: ``stop_when`` on the rows ``stop_rows`` marks."""
    return [(model, p, max_tokens, stop_when if stop_rows is None or stop_rows[i] else None)
            for i, p in enumerate(prompts)]


def _answer_rows(base_url: str, rows: list[tuple[str, list[dict], int, Callable[[str], bool] | None]],
                 concurrency: int, api_key: str | None) -> list[str]:
    """:func:`generate_answers` for rows of (model, messages, max_tokens, stop_when or None), in one pool."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=2, timeout=300)

    def one(row: tuple) -> str:
        model, messages, max_tokens, stop_when = row
        args = dict(model=model, messages=messages, temperature=0.0, max_tokens=max_tokens)
        if stop_when is None:
            r = client.chat.completions.create(**args)
            return r.choices[0].message.content or ""
        text = ""
        with client.chat.completions.create(**args, stream=True) as stream:
            for chunk in stream:
                text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
                if stop_when(text):
                    break
        return text

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, rows))


def _schema(cfg: TrainConfig) -> dict | None:
    p = cfg.eval.schema_path
    if p is None:
        return None
    if not p.is_file():
        raise TrainingError(f"eval.schema_path={str(p)!r}: no such file")
    return json.loads(p.read_text(encoding="utf-8"))


def evaluate_on_engine(base_url: str, model: str, cfg: TrainConfig, sets: list[EvalSet],
                       api_key: str | None = None) -> dict[str, Any]:
    """{set name: scores (+ the set's identity and a few sample answers)} for one model name on a running engine."""
    return dict(zip([s.name for s in sets], score_runs(base_url, [(model, s) for s in sets], cfg, api_key)))


def score_runs(base_url: str, runs: list[tuple[str, EvalSet]], cfg: TrainConfig, api_key: str | None = None,
               concurrency: int = 32) -> list[dict[str, Any]]:
    """The scores of each (model, set) run. Every row of every run answers from one pool, so the
    engine's batch stays full until the last row instead of draining at the end of each set."""
    schema = _schema(cfg)
    rows: list[tuple] = []
    spans = []
    for model, s in runs:
        stop = json_early_stop(s.references) if s.scoring == "structured" else {}
        rows += _rows(model, s.prompts, s.max_new_tokens, **stop)
        spans.append(len(rows))
    answers = _answer_rows(base_url, rows, concurrency, api_key)
    return [score_set(s, answers[end - len(s.prompts):end], schema) for (_, s), end in zip(runs, spans)]


def json_early_stop(references: list[str]) -> dict[str, Any]:
    """:func:`generate_answers` arguments for answers scored as JSON: the rows with a JSON reference stop
    generating once the answer cannot become JSON (the base's "Sure, here is..."); the score is the
    same, the engine's time is not spent on it."""
    return {"stop_when": cannot_become_json, "stop_rows": [parse_json(r) is not None for r in references]}


def _adapter_rank(adapter_dir: Path, default: int) -> int:
    """The candidate's LoRA rank (a continued adapter keeps its parent's), from its adapter_config.json."""
    try:
        return int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def base_cache_path(cfg: TrainConfig, settings: Settings, base_manifest: Any, s: EvalSet) -> Path:
    """Where the base's scores on set ``s`` are cached: by base identity, the set's file hash and how it is scored."""
    parts = {
        "base": base_manifest.identity.model_dump(mode="json"),
        "set": {"name": s.name, "sha256": s.sha256, "scoring": s.scoring, "fields": s.fields,
                "max_new_tokens": s.max_new_tokens, "rows": len(s.prompts)},
        "schema": sha256_bytes(cfg.eval.schema_path.read_bytes()) if cfg.eval.schema_path else None,
        "v": CACHE_VERSION,
    }
    key = sha256_bytes(json.dumps(parts, sort_keys=True, default=str).encode())[:24]
    return settings.layout.cache / "eval" / f"{base_manifest.name}-{s.name}-{key}.json"


def run_evaluation(cfg: TrainConfig, settings: Settings, base_manifest: Any, base_dir: Path, adapter_dir: Path,
                   say=print) -> dict[str, Any]:
    """On one engine (``eval.engine_url``, else one started on the base here): score the base on every
    set not cached yet, load the adapter at runtime, score it on every set. Returns {"base": {set:
    scores}, "adapter": {set: scores}, "sets": [names in report order], "base_cached": [sets whose base
    scores came from the cache]}."""
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    sets = load_eval_sets(cfg)
    if not sets:
        return {"base": {}, "adapter": {}, "sets": [], "base_cached": []}
    listed = ", ".join(f"{s.name} ({len(s.prompts)} rows)" for s in sets)
    if cfg.eval.engine_url:
        check_eval_engine(cfg.eval.engine_url, base_manifest.name, settings.engine_api_key)  # still there after training
        say(f"evaluating {listed} on the running engine {cfg.eval.engine_url}")
        return _evaluate(cfg, settings, base_manifest, adapter_dir, sets, cfg.eval.engine_url, settings.engine_api_key,
                         f"{CANDIDATE}-{uuid.uuid4().hex[:8]}", say)
    log = settings.layout.logs / "train-eval-engine.log"
    engine_cfg = EngineConfig.from_settings(
        settings, base_dir, base_manifest.name, log_path=log, start_timeout_s=cfg.eval.engine_start_timeout_s,
        max_lora_rank=_adapter_rank(adapter_dir, cfg.peft.r), max_loras=1,  # fitted: the CPU LoRA cost grows with it
    )
    say(f"starting vLLM engine on {base_manifest.name} to evaluate {listed} (log: {log})")
    with LocalEngine(engine_cfg) as engine:
        return _evaluate(cfg, settings, base_manifest, adapter_dir, sets, engine.root_url, None, CANDIDATE, say)


def _bearer(api_key: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {api_key}"} if api_key else None


def check_eval_engine(root: str, base: str, api_key: str | None) -> None:
    """The engine at ``root`` (eval.engine_url) answers and serves ``base``, or a TrainingError naming it."""
    import httpx

    try:
        r = httpx.get(f"{root}/v1/models", headers=_bearer(api_key), timeout=10)
        r.raise_for_status()
        served = [m["id"] for m in r.json()["data"] if not m.get("parent")]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"eval.engine_url={root!r}: no vLLM engine answers /v1/models there ({exc})") from exc
    if base not in served:
        raise TrainingError(f"eval.engine_url={root!r} serves {served}, not the config's base {base!r}")


def _evaluate(cfg: TrainConfig, settings: Settings, base_manifest: Any, adapter_dir: Path, sets: list[EvalSet],
              root: str, api_key: str | None, candidate: str, say) -> dict[str, Any]:
    """Score base (cached per set) and candidate on the engine at ``root``; the candidate is unloaded after."""
    import httpx

    caches = {s.name: base_cache_path(cfg, settings, base_manifest, s) for s in sets}
    base_scores = {s.name: json.loads(caches[s.name].read_text()) for s in sets if caches[s.name].is_file()}
    cached = [s.name for s in sets if s.name in base_scores]
    todo = [s for s in sets if s.name not in base_scores]
    url = f"{root}/v1"
    headers = _bearer(api_key)
    r = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": candidate, "lora_path": str(adapter_dir)},
                   headers=headers, timeout=120)
    if r.status_code != 200:
        raise TrainingError(f"the engine at {root} refused the trained adapter ({r.status_code}): {r.text[:300]}")
    try:  # base and adapter side by side: one pool keeps the engine's batch full to the last row
        say("scoring the adapter on every set and the base model on "
            + (", ".join(s.name for s in todo) or "none") + (f" (cached: {', '.join(cached)})" if cached else ""))
        scores = score_runs(url, [*((base_manifest.name, s) for s in todo), *((candidate, s) for s in sets)], cfg,
                            api_key=api_key)
    finally:  # a shared engine keeps serving: give its slot back (a failure here must not hide the scoring's)
        try:
            httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": candidate}, headers=headers, timeout=60)
        except httpx.HTTPError:
            pass
    for s, fresh in zip(todo, scores):
        caches[s.name].parent.mkdir(parents=True, exist_ok=True)
        caches[s.name].write_text(json.dumps(fresh, indent=1))
        base_scores[s.name] = fresh
    adapter_scores = {s.name: sc for s, sc in zip(sets, scores[len(todo):])}
    order = [s.name for s in sets]
    return {"base": {n: base_scores[n] for n in order}, "adapter": adapter_scores, "sets": order,
            "base_cached": cached}
