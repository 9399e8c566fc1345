"""Attention for padding-free and packed batches on the CPU: each row of the flat sequence attends to itself only.

A padding-free step (``padding_free: true``, or ``packing: true``) sends its rows as one flat
sequence with position ids. transformers' ``sdpa`` then builds a (tokens x tokens) block-diagonal mask and runs the
attention of the whole flat sequence: for 8 rows of ~48 tokens that is 8x the score entries of
the rows themselves, and PyTorch's CPU flash kernel is slow on such small blocks (its backward
costs ~8 ms per layer here). This implementation cuts the flat sequence at TRL's
``cu_seq_lens_q`` and runs plain causal attention per row in fp32 (q heads grouped by their kv
head, no repeated kv): the same result as ``sdpa`` to fp32 rounding, and on SmolLM2-135M's
shapes 2.1-2.8x faster forward + backward per layer (``benchmarks/attention_bench.py``). Any call
without row boundaries (padded batches, generation) goes to transformers' ``sdpa`` unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["NAME", "per_row_attention", "register"]

NAME = "lorafleet_per_row"


@functools.lru_cache(maxsize=512)
def _future(n: int, device: Any) -> Any:
    """(n, n) True above the diagonal: the positions a causal query may not see."""
    import torch

    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def per_row_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, cu_seq_lens_q: Any = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature; query (1, heads, T, dim), key/value (1, kv_heads, T, dim)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    total = query.shape[2]
    bounds = cu_seq_lens_q.tolist() if cu_seq_lens_q is not None else []
    if (query.shape[0] != 1 or len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != total or key.shape[2] != total
            or (dropout and module.training) or not getattr(module, "is_causal", True)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      cu_seq_lens_q=cu_seq_lens_q, **kwargs)
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]
    rep = heads // kv_heads
    scale = dim ** -0.5 if scaling is None else scaling
    rows = []
    for start, end in zip(bounds, bounds[1:]):
        n = end - start
        if n == 0:
            continue
        q = query[0, :, start:end].float().reshape(kv_heads, rep * n, dim)  # head h uses kv head h // rep
        k, v = key[0, :, start:end].float(), value[0, :, start:end].float()
        scores = ((q @ k.transpose(-1, -2)) * scale).view(kv_heads, rep, n, n)
        scores = scores.masked_fill(_future(n, q.device), float("-inf"))
        rows.append((scores.softmax(-1).view(kv_heads, rep * n, n) @ v).view(heads, n, dim))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)
    return out.to(query.dtype).transpose(0, 1).unsqueeze(0).contiguous(), None  # (1, T, heads, dim) as sdpa's


def register() -> str:
    """Register the attention (and sdpa's mask builder for its fallback) with transformers; returns its name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, per_row_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
