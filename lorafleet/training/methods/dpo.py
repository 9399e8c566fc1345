"""Direct preference optimisation (TRL ``DPOTrainer``): prompt/chosen/rejected rows, ``dpo_beta``.

The reference policy is the model the run starts from: the base with the adapter disabled for a
fresh LoRA, or a frozen copy of the starting adapter (TRL's "ref" adapter) with ``init_from``.
"""

from __future__ import annotations

from typing import Any

from lorafleet.training.methods import TrainMethod
from lorafleet.training.rows import as_messages

__all__ = ["METHOD", "build_trainer", "final_metrics", "preference_win_rate", "shape_rows"]


def shape_rows(rows: list[dict]) -> list[dict]:
    """Preference rows in TRL's conversational form (a bare string becomes one user/assistant turn)."""
    return [{"prompt": as_messages(r["prompt"], "user"), "chosen": as_messages(r["chosen"], "assistant"),
             "rejected": as_messages(r["rejected"], "assistant")} for r in rows]


def build_trainer(model: Any, args: dict, train_ds: Any, eval_ds: Any, tokenizer: Any, peft_config: Any,
                  callbacks: list, cfg: dict) -> Any:
    from trl import DPOConfig, DPOTrainer

    args = dict(args, beta=cfg["dpo_beta"])
    return DPOTrainer(model=model, args=DPOConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def _completion_logp(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> float:
    import torch

    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], device=model.device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    target = torch.tensor(list(completion_ids), device=logits.device)
    return float(logits.log_softmax(-1).gather(-1, target[:, None]).sum())


def preference_win_rate(model: Any, dataset: Any) -> float:
    """Share of pairs (tokenized: prompt_ids/chosen_ids/rejected_ids) whose summed completion
    log-prob under ``model`` is higher for chosen than for rejected."""
    import torch

    wins = 0
    with torch.no_grad():
        for row in dataset:
            chosen = _completion_logp(model, row["prompt_ids"], row["chosen_ids"])
            wins += chosen > _completion_logp(model, row["prompt_ids"], row["rejected_ids"])
    return wins / max(1, len(dataset))


def final_metrics(trainer: Any) -> dict:
    """DPO loss and reward accuracy on the held-out pairs, and the preference win rate of the trained
    adapter beside that of the reference it started from (the parent adapter, or the base)."""
    from trl.trainer.utils import use_adapter

    ev = trainer.evaluate()
    model = trainer.model
    model.eval()
    out = {"dpo_eval_loss": float(ev["eval_loss"]),
           "eval_reward_accuracy": float(ev.get("eval_rewards/accuracies", float("nan"))),
           "preference_win_rate": round(preference_win_rate(model, trainer.eval_dataset), 4)}
    with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
        out["reference_preference_win_rate"] = round(preference_win_rate(model, trainer.eval_dataset), 4)
    return out


METHOD = TrainMethod("dpo", shape_rows, build_trainer, final_metrics, supports_packing=False)
