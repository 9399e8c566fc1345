"""Supervised fine-tuning (TRL ``SFTTrainer``): chat rows become prompt/completion pairs and the
loss is on the assistant completion only; optional sequence packing (best-fit decreasing),
padding-free batches (``padding_free``: each step's rows as one flat sequence, no padding, same
rows per step) or length-grouped batches (``group_by_length``: less padding, same rows per step)."""

from __future__ import annotations

from typing import Any

from lorafleet.training.methods import TrainMethod

__all__ = ["METHOD", "LengthGroupedBatches", "build_trainer", "final_metrics", "shape_rows"]

WINDOW_BATCHES = 50  # rows are sorted by length within windows of this many batches


def shape_rows(rows: list[dict]) -> list[dict]:
    """Chat ``messages`` -> TRL's conversational prompt/completion (the last turn is the completion)."""
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


class LengthGroupedBatches:
    """A sampler whose consecutive ``batch_size`` indices have similar lengths, in random batch order.

    Each epoch: shuffle the rows, sort them by length within windows of ``WINDOW_BATCHES`` batches,
    cut the windows into batches and shuffle the full batches (a short remainder goes last, so it
    never shifts the batches after it). Unlike transformers' ``group_by_length`` sampler, which runs
    every window from its longest rows to its shortest, the order carries no length curriculum: the
    last steps of a cosine schedule see the same mix of rows as the first. Deterministic per
    (seed, epoch), so a resumed run replays the same order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        rows = torch.randperm(len(self.lengths), generator=g).tolist()
        bs, window = self.batch_size, self.batch_size * WINDOW_BATCHES
        full, rest = [], []
        for start in range(0, len(rows), window):
            chunk = sorted(rows[start:start + window], key=self.lengths.__getitem__)
            for i in range(0, len(chunk), bs):
                (full if len(chunk[i:i + bs]) == bs else rest).append(chunk[i:i + bs])
        order = torch.randperm(len(full), generator=g).tolist()
        return iter([i for b in [*(full[k] for k in order), *rest] for i in b])


def build_trainer(model: Any, args: dict, train_ds: Any, eval_ds: Any, tokenizer: Any, peft_config: Any,
                  callbacks: list, cfg: dict) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = dict(args, completion_only_loss=True)
    flat_limit = None  # padding-free without packing: TRL truncates only packed rows, so we cut to this
    if cfg.get("packing"):
        # bfd packing is padding-free: one flat row per batch with position_ids and no attention mask;
        # the attention keeps the packed rows apart (per row on the CPU, training/attention.py; sdpa's
        # block mask elsewhere).
        # The eval set stays unpacked so the eval loss is measured the same way with and without packing.
        args.update(packing=True, packing_strategy="bfd", eval_packing=False)
    elif cfg.get("padding_free"):
        flat_limit = args["max_length"]
        args.update(padding_free=True, max_length=None)
    cls = SFTTrainer
    if cfg.get("group_by_length"):
        class LengthGroupedSFTTrainer(SFTTrainer):
            def _get_train_sampler(self, train_dataset=None):
                ds = self.train_dataset if train_dataset is None else train_dataset
                rows_per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps
                return LengthGroupedBatches([len(ids) for ids in ds["input_ids"]], rows_per_step, self.args.seed)
        cls = LengthGroupedSFTTrainer
    trainer = cls(model=model, args=SFTConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                  processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    if flat_limit is not None:
        trainer.train_dataset = _truncated(trainer.train_dataset, flat_limit)
        if trainer.eval_dataset is not None:
            trainer.eval_dataset = _truncated(trainer.eval_dataset, flat_limit)
    return trainer


def _truncated(ds: Any, limit: int) -> Any:
    """Tokenized rows cut to ``limit`` tokens, and those left without a labelled token dropped: what
    TRL does to padded rows (``max_length``), which it skips when ``max_length`` is None."""
    def cut(row: dict) -> dict:
        n = len(row["input_ids"])
        return {c: v[:limit] for c, v in row.items() if isinstance(v, list) and len(v) == n}
    return ds.map(cut).filter(lambda row: any(label != -100 for label in row["labels"]))


def final_metrics(trainer: Any) -> dict:
    """Held-out loss of the adapter and of the base (the adapter disabled)."""
    out = {"eval_loss": float(trainer.evaluate()["eval_loss"])}
    with trainer.model.disable_adapter():
        out["base_eval_loss"] = float(trainer.evaluate()["eval_loss"])
    return out


METHOD = TrainMethod("sft", shape_rows, build_trainer, final_metrics, supports_packing=True)
