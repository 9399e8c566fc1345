"""Supervised fine-tuning (TRL ``SFTTrainer``): chat rows become prompt/completion pairs and the
loss is on the assistant completion only; optional sequence packing (best-fit decreasing)."""

from __future__ import annotations

from typing import Any

from lorafleet.training.methods import TrainMethod

__all__ = ["METHOD", "build_trainer", "final_metrics", "shape_rows"]


def shape_rows(rows: list[dict]) -> list[dict]:
    """Chat ``messages`` -> TRL's conversational prompt/completion (the last turn is the completion)."""
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


def build_trainer(model: Any, args: dict, train_ds: Any, eval_ds: Any, tokenizer: Any, peft_config: Any,
                  callbacks: list, cfg: dict) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = dict(args, completion_only_loss=True)
    if cfg.get("packing"):
        # bfd packing is padding-free: one flat row per batch with position_ids and no attention mask;
        # transformers' sdpa/eager masks keep the packed rows apart (no flash attention needed on CPU).
        # The eval set stays unpacked so the eval loss is measured the same way with and without packing.
        args.update(packing=True, packing_strategy="bfd", eval_packing=False)
    return SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def final_metrics(trainer: Any) -> dict:
    """Held-out loss of the adapter and of the base (the adapter disabled)."""
    out = {"eval_loss": float(trainer.evaluate()["eval_loss"])}
    with trainer.model.disable_adapter():
        out["base_eval_loss"] = float(trainer.evaluate()["eval_loss"])
    return out


METHOD = TrainMethod("sft", shape_rows, build_trainer, final_metrics, supports_packing=True)
