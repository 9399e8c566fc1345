"""Score the base model and a trained adapter on any support-intents JSONL sets (the real vLLM engine).

One engine on the base (greedy, unconstrained decoding, like `platform train`'s evaluation); the
adapter is loaded at runtime through ``/v1/load_lora_adapter``; answers are scored by
:mod:`lorafleet.training.scoring` (whole-object match, schema pass, intent / order_id / error
match). Prints a table, writes every score and every wrong adapter answer to ``--out``:

    export LORAFLEET_HOME=/tmp/h2-home
    .venv/bin/python examples/support-intents/score.py --adapter RUN_DIR/adapter \\
        examples/support-intents/hard.jsonl examples/support-intents/eval.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lorafleet.core.settings import get_settings
from lorafleet.engine.vllm import EngineConfig, LocalEngine
from lorafleet.training.evaluate import generate_answers, json_early_stop
from lorafleet.training.scoring import parse_json, score_answers

__all__ = ["main", "load_set"]

HERE = Path(__file__).resolve().parent
FIELDS = ["intent", "order_id", "error"]


def load_set(path: Path) -> tuple[list[list[dict]], list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["messages"][:-1] for r in rows], [r["messages"][-1]["content"] for r in rows]


def _score(url: str, model: str, sets: dict[str, tuple], schema: dict, max_tokens: int) -> tuple[dict, dict]:
    scores, wrong = {}, {}
    for name, (prompts, refs) in sets.items():
        answers = generate_answers(url, model, prompts, max_tokens, **json_early_stop(refs))  # same scores
        scores[name] = score_answers(answers, refs, schema, FIELDS)
        wrong[name] = [{"user": p[-1]["content"], "answer": a, "reference": r}
                       for p, a, r in zip(prompts, answers, refs) if parse_json(a) != parse_json(r)]
    return scores, wrong


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", type=Path, help="JSONL files of chat rows")
    ap.add_argument("--adapter", type=Path, help="trained adapter folder (peft); omitted: base only")
    ap.add_argument("--base", default="smollm2-135m-instruct", help="base model name in the home")
    ap.add_argument("--no-base", action="store_true", help="score only the adapter")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=HERE.parents[1] / "benchmarks" / "out" / "support-intents-scores.json")
    args = ap.parse_args()

    settings = get_settings()
    schema = json.loads((HERE / "schema.json").read_text())
    sets = {p.stem: load_set(p) for p in args.sets}
    rank = json.loads((args.adapter / "adapter_config.json").read_text())["r"] if args.adapter else 16  # fitted
    log = settings.layout.logs / "score-engine.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cfg = EngineConfig.from_settings(settings, settings.layout.base(args.base), args.base, log_path=log,
                                     max_lora_rank=rank, max_loras=1)
    result: dict = {"sets": {k: str(p) for k, p in zip(sets, args.sets)}, "adapter_dir": str(args.adapter)}
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))

    with LocalEngine(cfg) as engine:
        if args.adapter is not None:  # the adapter first: its numbers are the ones that matter
            import httpx

            r = httpx.post(f"{engine.root_url}/v1/load_lora_adapter",
                           json={"lora_name": "candidate", "lora_path": str(args.adapter.resolve())}, timeout=120)
            r.raise_for_status()
            result["adapter"], result["adapter_wrong"] = _score(engine.url, "candidate", sets, schema, args.max_tokens)
            save()
        if not args.no_base:
            result["base"], _ = _score(engine.url, args.base, sets, schema, args.max_tokens)
    save()
    print(f"{'set':<10} {'model':<8} {'rows':>5} {'whole':>7} {'intent':>7} {'order_id':>8} {'error':>7} {'schema':>7}")
    for model in ("base", "adapter"):
        for name, s in result.get(model, {}).items():
            fm = s["field_match"]
            print(f"{name:<10} {model:<8} {s['rows']:>5} {s['pass_rate']:>7.1%} {fm['intent']:>7.1%} "
                  f"{fm['order_id']:>8.1%} {fm['error']:>7.1%} {s.get('schema_pass_rate', 0):>7.1%}")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
