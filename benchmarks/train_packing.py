"""TRL sequence packing (``packing: true``, best-fit decreasing, padding-free) and length-grouped
batches (``group_by_length: true``) vs padded random batches, and TRL's CPU default of running the
LM head over every token (``worker.score_only_labelled_tokens`` scores only the completion's), on
the support-intents config: s/step, tokens/s, padding, and held-out loss at equal tokens; plus
what one held-out evaluation costs (the price of ``eval_every_steps``). Prints a table.

    LORAFLEET_HOME=/tmp/h3b-home .venv/bin/python benchmarks/train_packing.py --steps 20

Runs in-process (the trainer the Ray worker builds, without Ray: packing changes the trainer
only). The packed run's batch_size is chosen so that a step sees about as many tokens as a
padded step, so the two loss figures compare equal amounts of training.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import print_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "support-intents" / "train.yaml"


def run(cfg_overrides: list[str], steps: int, label: str, score_every_token: bool = False) -> dict:
    """``score_every_token``: TRL's own CPU choice (the LM head over every position, not only the
    completion's), which lorafleet's trainer switches off."""
    import torch
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    from lorafleet.core.settings import get_settings
    from lorafleet.training.config import load_train_config
    from lorafleet.training.job import job_payload
    from lorafleet.training.worker import build_trainer

    settings = get_settings()
    cfg = load_train_config(CONFIG, [f"max_steps={steps}", f"checkpoint_every_steps={steps + 1}", *cfg_overrides])
    payload = job_payload(cfg, settings.layout.base(cfg.base))
    torch.set_num_threads(cfg.cpus_per_worker)
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(payload, tmp, [])
        patched = trl_utils._use_triton
        if score_every_token:
            trl_utils._use_triton = kernels._use_triton
        rows_per_step = None
        if "seq_lengths" in trainer.train_dataset.column_names:  # packed blocks hold several rows
            n_rows = sum(len(s) for s in trainer.train_dataset["seq_lengths"])
            rows_per_step = cfg.batch_size * n_rows / len(trainer.train_dataset)
        batches = list(itertools.islice(trainer.get_train_dataloader(), steps))  # what the steps compute
        computed = sum(int(b["input_ids"].numel()) for b in batches)
        real = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
                   for b in batches)
        result = trainer.train()
        t0 = time.perf_counter()
        eval_loss = trainer.evaluate()["eval_loss"]
        eval_s = time.perf_counter() - t0
        trl_utils._use_triton = patched
    runtime = result.metrics["train_runtime"]
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"variant": label, "batch_size": cfg.batch_size, "rows_per_step": rows_per_step or cfg.batch_size,
            "s_per_step": runtime / result.global_step, "tokens": tokens, "tokens_per_s": tokens / runtime,
            "padding": 1 - real / computed, "eval_loss": eval_loss, "eval_s": eval_s, "load1": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--packed-batch", type=int, default=None,
                    help="batch_size of the packed run (default: tokens per step equal to the padded run's)")
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value")
    args = ap.parse_args()
    args.set = ["padding_free=false", *args.set]  # padded batches as the reference (the example ships padding-free)
    every = run(list(args.set), args.steps, "padded, LM head on every token", score_every_token=True)
    padded = run(list(args.set), args.steps, "padded")
    per_row = padded["tokens"] / (padded["rows_per_step"] * args.steps)
    from lorafleet.training.config import load_train_config

    block = load_train_config(CONFIG, args.set).max_seq_length
    k = args.packed_batch or max(1, round(padded["rows_per_step"] * per_row / block))
    packed = run([*args.set, "packing=true", f"batch_size={k}"], args.steps, "packed")
    grouped = run([*args.set, "group_by_length=true"], args.steps, "grouped")
    runs = (every, padded, packed, grouped)
    rows = [[r["variant"], r["batch_size"], round(r["rows_per_step"], 1), r["s_per_step"], r["tokens"],
             round(r["tokens_per_s"], 1), f"{r['padding']:.1%}", r["eval_loss"], round(r["eval_s"], 1),
             round(r["load1"], 2)] for r in runs]
    print_table(f"packing and length grouping, {args.steps} steps, support-intents",
                ["variant", "batch", "rows/step", "s/step", "tokens", "tokens/s", "padding", "eval_loss",
                 "one eval s", "load1"], rows)
    print(json.dumps(list(runs)))


if __name__ == "__main__":
    main()
