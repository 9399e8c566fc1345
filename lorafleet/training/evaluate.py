"""Evaluation on the real vLLM engine (what serving runs): the base and the candidate adapter
answer the held-out and golden prompts with greedy, unconstrained decoding; the answers are
scored by :mod:`lorafleet.training.scoring`. Base results are cached per base identity,
dataset hash and eval settings under ``$HOME/cache/eval``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_bytes
from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import TrainingError
from lorafleet.training.rows import as_messages, read_jsonl
from lorafleet.training.scoring import score_answers

__all__ = ["EvalSet", "load_eval_sets", "generate_answers", "evaluate_on_engine", "run_evaluation", "CANDIDATE"]

CANDIDATE = "candidate"


class EvalSet:
    """Prompts (chat messages up to the final assistant turn) and reference answers of one split."""

    def __init__(self, name: str, path: Path, prompts: list[list[dict]], references: list[str]) -> None:
        self.name, self.path, self.prompts, self.references = name, path, prompts, references


def load_eval_sets(cfg: TrainConfig) -> list[EvalSet]:
    sets = []
    for name in ("eval", "golden"):
        path = getattr(cfg.data, name)
        if path is None:
            continue
        prompts, refs = [], []
        for r in read_jsonl(path, name)[: cfg.eval.max_rows]:
            d = r.data
            if "messages" in d:
                prompts.append(d["messages"][:-1])
                refs.append(d["messages"][-1]["content"])
            else:
                prompts.append(as_messages(d["prompt"], "user"))
                refs.append("".join(m["content"] for m in as_messages(d["chosen"], "assistant")))
        sets.append(EvalSet(name, path, prompts, refs))
    return sets


def generate_answers(base_url: str, model: str, prompts: list[list[dict]], max_tokens: int,
                     concurrency: int = 16) -> list[str]:
    """Greedy chat completions through the engine's OpenAI API (the official client)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused", max_retries=2, timeout=300)

    def one(messages: list[dict]) -> str:
        r = client.chat.completions.create(model=model, messages=messages, temperature=0.0, max_tokens=max_tokens)
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, prompts))


def _schema(cfg: TrainConfig) -> dict | None:
    p = cfg.eval.schema_path
    if p is None:
        return None
    if not p.is_file():
        raise TrainingError(f"eval.schema_path={str(p)!r}: no such file")
    return json.loads(p.read_text(encoding="utf-8"))


def evaluate_on_engine(base_url: str, model: str, cfg: TrainConfig, sets: list[EvalSet]) -> dict[str, Any]:
    """{split: scores (+ a few sample answers)} for one model name on a running engine."""
    schema = _schema(cfg)
    out = {}
    for s in sets:
        answers = generate_answers(base_url, model, s.prompts, cfg.eval.max_new_tokens)
        scores = score_answers(answers, s.references, schema, cfg.eval.exact_match_fields)
        scores["samples"] = [{"answer": a, "reference": r} for a, r in list(zip(answers, s.references))[:3]]
        out[s.name] = scores
    return out


def _cache_key(cfg: TrainConfig, base_manifest: Any, sets: list[EvalSet]) -> str:
    parts = {
        "base": base_manifest.identity.model_dump(mode="json"),
        "data": {s.name: sha256_bytes(s.path.read_bytes()) for s in sets},
        "eval": cfg.eval.model_dump(mode="json", exclude={"engine_start_timeout_s"}),
        "schema": sha256_bytes(cfg.eval.schema_path.read_bytes()) if cfg.eval.schema_path else None,
        "v": 1,
    }
    return sha256_bytes(json.dumps(parts, sort_keys=True, default=str).encode())[:24]


def run_evaluation(cfg: TrainConfig, settings: Settings, base_manifest: Any, base_dir: Path, adapter_dir: Path,
                   say=print) -> dict[str, Any]:
    """Start one engine on the base, score the base (or read its cache), load the adapter at runtime, score it."""
    import httpx

    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    sets = load_eval_sets(cfg)
    if not sets:
        return {"base": {}, "adapter": {}, "base_cached": False}
    cache = settings.layout.cache / "eval" / f"{base_manifest.name}-{_cache_key(cfg, base_manifest, sets)}.json"
    base_scores = json.loads(cache.read_text()) if cache.is_file() else None
    log = settings.layout.logs / "train-eval-engine.log"
    engine_cfg = EngineConfig.from_settings(
        settings, base_dir, base_manifest.name, log_path=log, start_timeout_s=cfg.eval.engine_start_timeout_s,
        max_lora_rank=max(settings.engine_max_lora_rank, cfg.peft.r), max_loras=1,
    )
    say(f"starting vLLM engine on {base_manifest.name} for evaluation (log: {log})")
    with LocalEngine(engine_cfg) as engine:
        if base_scores is None:
            say("scoring the base model")
            base_scores = evaluate_on_engine(engine.url, base_manifest.name, cfg, sets)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(base_scores, indent=1))
        r = httpx.post(f"{engine.root_url}/v1/load_lora_adapter",
                       json={"lora_name": CANDIDATE, "lora_path": str(adapter_dir)}, timeout=120)
        if r.status_code != 200:
            raise TrainingError(f"the engine refused the trained adapter ({r.status_code}): {r.text[:300]}")
        say("scoring the adapter")
        adapter_scores = evaluate_on_engine(engine.url, CANDIDATE, cfg, sets)
    return {"base": base_scores, "adapter": adapter_scores, "base_cached": cache.is_file()}
