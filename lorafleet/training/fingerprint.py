"""The fingerprint of a training distribution, written into the adapter's manifest.

Histograms of prompt and completion token lengths (fixed edges, the same buckets the gateway's
drift monitor fills from live traffic), the label distribution, the row count and the
sha256 of every dataset file, so a version can be compared with the traffic it serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_file
from lorafleet.training.config import TrainConfig
from lorafleet.training.rows import as_messages, read_jsonl

__all__ = ["dataset_hashes", "compute_fingerprint"]


def dataset_hashes(cfg: TrainConfig) -> dict[str, str]:
    """sha256 of each configured dataset file (train/eval/golden)."""
    out = {}
    for name in ("train", "eval", "golden"):
        p: Path | None = getattr(cfg.data, name)
        if p is not None:
            out[name] = sha256_file(p)
    return out


def compute_fingerprint(cfg: TrainConfig, tokenizer: Any) -> dict[str, Any]:
    """Token-length histograms and label shares of the training rows, rendered with the base's template."""
    rows = read_jsonl(cfg.data.train, "train")
    from lorafleet.registry.fingerprint import TURN_EDGES, Fingerprint, Histogram

    prompt_lengths, completion_lengths, turns, labels = [], [], [], {}
    for r in rows:
        d = r.data
        if "messages" in d:
            prompt, completion = d["messages"][:-1], d["messages"][-1]["content"]
        else:
            prompt = as_messages(d["prompt"], "user")
            completion = "".join(m["content"] for m in as_messages(d["chosen"], "assistant"))
        turns.append(len(prompt) + 1)
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        prompt_lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        completion_lengths.append(len(tokenizer(completion, add_special_tokens=False)["input_ids"]))
        if cfg.checks.label_field:
            from lorafleet.training.data import label_of

            lab = label_of(d, cfg.checks.label_field)
            labels[lab] = labels.get(lab, 0) + 1
    n = len(rows)
    fingerprint = Fingerprint(
        rows=n,
        features={"prompt_tokens": Histogram.of(prompt_lengths), "completion_tokens": Histogram.of(completion_lengths)},
        labels={k: v / n for k, v in sorted(labels.items())},
        turns_per_example=Histogram.of(turns, TURN_EDGES),
        label_field=cfg.checks.label_field,
        dataset_sha256=dataset_hashes(cfg),
    )
    return fingerprint.model_dump(mode="json")
