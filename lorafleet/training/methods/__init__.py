"""The training methods a config's ``method`` names, one module each (as peft keeps one tuner
per folder): each holds its method whole, from dataset shaping to the TRL trainer. The Ray
Train loop in :mod:`lorafleet.training.worker` only looks a method up here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorafleet.training.errors import TrainConfigError

__all__ = ["TrainMethod", "get_method", "method_names"]


@dataclass(frozen=True)
class TrainMethod:
    """One training method.

    ``shape_rows`` turns the JSONL rows into TRL's dataset format; ``build_trainer(model, args,
    train_ds, eval_ds, tokenizer, peft_config, callbacks, cfg)`` returns the TRL trainer, where
    ``args`` are the shared ``TrainingArguments`` keywords and ``peft_config`` is None when the
    model already carries a trainable adapter (continued training, ``init_from``);
    ``final_metrics(trainer)`` measures the trained adapter on the held-out rows.
    """

    name: str
    shape_rows: Callable[[list[dict]], list[dict]]
    build_trainer: Callable[..., Any]
    final_metrics: Callable[[Any], dict]
    supports_packing: bool


def _methods() -> dict[str, TrainMethod]:
    from lorafleet.training.methods import dpo, sft

    return {m.name: m for m in (sft.METHOD, dpo.METHOD)}


def method_names() -> list[str]:
    return sorted(_methods())


def get_method(name: str) -> TrainMethod:
    """The method called ``name``; the error lists the available ones."""
    methods = _methods()
    if name not in methods:
        raise TrainConfigError(f"method={name!r}: unknown training method (available: {', '.join(sorted(methods))})")
    return methods[name]
