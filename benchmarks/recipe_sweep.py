"""What each change to the support-intents recipe buys, in points: train one adapter per variant
(the trainer the Ray worker builds, run in-process) and score it on the held-out, hard and golden
sets (greedy, unconstrained). Prints a table, writes ``benchmarks/out/recipe_sweep.json`` and draws
``benchmarks/out/recipe_sweep.png``.

    LORAFLEET_HOME=/tmp/sweep-home .venv/bin/python benchmarks/recipe_sweep.py shipped packed
    .venv/bin/python benchmarks/recipe_sweep.py --list

Scoring here uses transformers' batched greedy generation on the merged adapter (seconds per
set, where vLLM's CPU LoRA path takes minutes), so a sweep of several variants fits in an hour;
the shipped recipe's official numbers come from ``examples/support-intents/score.py`` on the
real vLLM engine. Variants are config overrides on ``examples/support-intents/train.yaml``;
results of earlier runs are kept in the JSON, so variants can be run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support-intents"
OUT = ROOT / "benchmarks" / "out" / "recipe_sweep.json"
FIELDS = ["intent", "order_id", "error"]
SETS = {"held_out": "eval.jsonl", "hard": "hard.jsonl", "golden": "golden.jsonl"}
ATTENTION = "peft.target_modules=[q_proj,k_proj,v_proj,o_proj]"

# overrides on train.yaml as shipped (LoRA r=16 on all linear layers, batch 8, 1 epoch, lr 2e-3)
VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "attention-only-bs16": [ATTENTION, "batch_size=16"],   # the recipe before 2026-12-02
    "all-linear-bs16": ["batch_size=16"],
    "packed": ["packing=true", "batch_size=3"],            # 3 blocks of 128 tokens: about 7.5 rows a step
    "grouped": ["group_by_length=true"],                   # batches of similar length: 0.4% padding, not 20%
    "lr1e-3": ["learning_rate=0.001"],
    "loraplus": ["learning_rate=0.001", "loraplus_lr_ratio=8"],  # LoRA+: B at 8e-3 (README: not shipped)
    "2-epochs": ["epochs=2"],
    "r32": ["peft.r=32", "peft.alpha=64"],
}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 32, batch: int = 32) -> list[str]:
    """Greedy answers, batched with left padding (the chat template with the generation prompt, as vLLM)."""
    import torch

    tokenizer.padding_side = "left"
    out: list[str] = []
    for i in range(0, len(prompts), batch):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + batch]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def score_model(model, tokenizer, schema: dict, train_file: Path) -> tuple[dict, dict]:
    from lorafleet.training.scoring import parse_json, score_answers

    scores, wrong = {}, {}
    for name, fname in SETS.items():
        rows = _rows(EXAMPLE / fname)
        prompts, refs = [r["messages"][:-1] for r in rows], [r["messages"][-1]["content"] for r in rows]
        answers = generate(model, tokenizer, prompts)
        scores[name] = score_answers(answers, refs, schema, FIELDS)
        wrong[name] = [{"user": p[-1]["content"], "answer": a, "reference": r}
                       for p, a, r in zip(prompts, answers, refs) if parse_json(a) != parse_json(r)]
    return scores, wrong


def run_variant(label: str, overrides: list[str], train_file: Path | None) -> dict:
    import torch

    from lorafleet.core.settings import get_settings
    from lorafleet.training.config import load_train_config
    from lorafleet.training.job import job_payload
    from lorafleet.training.worker import build_trainer

    settings = get_settings()
    sets = [f"data.train={train_file}"] if train_file else []
    cfg = load_train_config(EXAMPLE / "train.yaml", [*overrides, *sets, "checkpoint_every_steps=100000"])
    payload = job_payload(cfg, settings.layout.base(cfg.base))
    torch.set_num_threads(cfg.cpus_per_worker)
    torch.manual_seed(cfg.seed)
    schema = json.loads((EXAMPLE / "schema.json").read_text())
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # long work shows progress: one line per logged step
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                print(f"  {label}: step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(payload, tmp, [Progress()])
        t0 = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - t0
        model = trainer.model.merge_and_unload().eval()
        t1 = time.perf_counter()
        scores, wrong = score_model(model, trainer.processing_class, schema, Path(cfg.data.train))
    return {"variant": label, "overrides": overrides, "train_file": str(cfg.data.train), "steps": result.global_step,
            "train_s": round(train_s, 1), "s_per_step": round(train_s / max(1, result.global_step), 2),
            "score_s": round(time.perf_counter() - t1, 1), "train_loss": round(float(result.training_loss), 4),
            "load1": round(os.getloadavg()[0], 2), "scores": scores, "wrong": wrong}


def table(results: list[dict]) -> None:
    ref = results[0]["scores"] if results else {}
    rows = []
    for r in results:
        s = r["scores"]
        cells = [r["variant"], r["steps"], r["s_per_step"], round(r["train_s"] / 60, 1)]
        for name in SETS:
            whole, intent = s[name]["pass_rate"], s[name]["field_match"]["intent"]
            d = whole - ref[name]["pass_rate"]
            cells += [f"{whole:.1%} ({d:+.1%})", f"{intent:.1%}"]
        rows.append(cells)
    print_table("support-intents recipe sweep (whole-object, change vs the first row; intent)",
                ["variant", "steps", "s/step", "train min", "held-out", "intent", "hard", "intent", "golden",
                 "intent"], rows)


def plot(results: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.8 / max(1, len(results))
    for ax, metric in zip(axes, ("whole-object", "intent")):
        for i, r in enumerate(results):
            vals = [r["scores"][n]["pass_rate"] if metric == "whole-object" else r["scores"][n]["field_match"]["intent"]
                    for n in SETS]
            ax.bar([k + i * width for k in range(len(SETS))], vals, width, label=r["variant"])
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(SETS))], list(SETS))
        ax.set(title=metric, ylim=(0, 1))
        ax.axhline(0.85 if metric == "whole-object" else 0.90, color="grey", ls="--", lw=0.8)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("support-intents: what each recipe change buys (SmolLM2-135M, greedy)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    return out.with_suffix(".png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", help=f"variant names ({', '.join(VARIANTS)})")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    ap.add_argument("--train-file", type=Path, help="train on this JSONL instead of the config's")
    ap.add_argument("--label-suffix", default="", help="appended to each variant's label (e.g. the data's name)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.list or not args.variants:
        for k, v in VARIANTS.items():
            print(f"{k:<22} {' '.join(v) or '(train.yaml as shipped)'}")
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; --list shows them")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    for name in args.variants:
        print(f"training {name}: {' '.join(VARIANTS[name]) or '(as shipped)'}", flush=True)
        r = run_variant(name + args.label_suffix, VARIANTS[name], args.train_file)
        results = [x for x in results if x["variant"] != r["variant"]] + [r]
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
        table(results)
    print(f"wrote {args.out} and {plot(results, args.out)}")


if __name__ == "__main__":
    main()
