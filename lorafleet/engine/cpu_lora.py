"""Faster LoRA ops for vLLM's CPU engine, installed as a vLLM general plugin.

vLLM's CPU LoRA path (``vllm.lora.ops.torch_ops``, used by ``PunicaWrapperCPU``) gathers a full
copy of the LoRA matrix for every token (``lora_weights[token_indices]``: tokens x out x rank)
and multiplies token by token (``einsum("bi, boi -> bo")``). Its cost grows with tokens x
``--max-lora-rank`` x hidden size, even when every token of the batch uses the same adapter.

The ops here compute the same thing per adapter instead: one matrix multiply for the rows of
each distinct index in the batch (usually one or a few), with the same dtype casts and the same
output writes as vLLM's. A small batch of many adapters (decode under many-adapter traffic) takes
one matmul against every slot and a gather instead, where the loop's per-op overhead would cost
more (``STACKED_MACS_PER_ADAPTER``, measured by ``benchmarks/cpu_lora_ops_bench.py``). A token whose index is -1 (a request for the
base in a batch that also serves adapters) gets no LoRA contribution, as it gets from the GPU
kernels and as base answers in mixed batches show on the engine with either set of ops. ``benchmarks/cpu_lora_bench.py``
measures the effect (base vs adapter tokens/s at 1/8/32 streams); the unit tests compare every
op with vLLM's own on random tensors.

Switched on in an engine process by ``LORAFLEET_CPU_LORA_OPS=1`` (the engine's default
environment, :class:`lorafleet.engine.vllm.EngineConfig`); the entry point is
``lorafleet_cpu_lora`` in pyproject.toml.
"""

from __future__ import annotations

import os

__all__ = ["ENABLE_ENV", "PLUGIN_NAME", "OPS", "bgmv_expand", "cpu_lora_environment", "bgmv_expand_slice", "bgmv_shrink", "install",
           "register", "sgmv_expand", "sgmv_expand_slice", "sgmv_shrink"]

ENABLE_ENV = "LORAFLEET_CPU_LORA_OPS"
PLUGIN_NAME = "lorafleet_cpu_lora"  # the entry point's name, for VLLM_PLUGINS


def cpu_lora_environment(vllm_plugins: str | None) -> dict[str, str]:
    """The engine environment that switches the ops on; an allow-list in ``VLLM_PLUGINS`` gains this plugin."""
    env = {ENABLE_ENV: "1"}
    if vllm_plugins:  # unset means every installed plugin loads; a list must name this one
        names = [n for n in vllm_plugins.split(",") if n.strip()]
        env["VLLM_PLUGINS"] = ",".join(names if PLUGIN_NAME in names else [*names, PLUGIN_NAME])
    return env


# A batch with k adapters takes one matmul against every slot (then a gather) instead of k
# matmuls when that costs at most k x this many multiply-adds (tokens x slots x out x in): on
# small batches (decode) the loop's per-adapter op overhead (~15 us) outweighs the other slots'
# work. Set from benchmarks/cpu_lora_ops_bench.py (docs/operations/benchmarks.md).
STACKED_MACS_PER_ADAPTER = 1 << 20


def _per_adapter(inputs, weights, indices, dtype):
    """``out[t] = inputs[t] @ weights[indices[t]].T`` for every token t, one matmul per distinct index
    (or, for a small batch with several adapters, one matmul against every slot, then a gather)."""
    import torch

    if weights.dim() == 4:  # (slots, 1, out, in)
        weights = weights.squeeze(1)
    x = inputs.to(dtype=dtype)
    uniq = torch.unique(indices)
    if uniq.numel() == 1 and int(uniq) >= 0:
        return x @ weights[int(uniq)].to(dtype=dtype).t()
    slots, out_dim, in_dim = weights.shape
    tokens = x.shape[0]
    if uniq.numel() > 1 and tokens * slots * out_dim * in_dim <= uniq.numel() * STACKED_MACS_PER_ADAPTER:
        every = x @ weights.to(dtype=dtype).reshape(slots * out_dim, in_dim).t()  # (tokens, slots x out)
        out = every.view(tokens, slots, out_dim)[torch.arange(tokens), indices.clamp(min=0)]
        if int(uniq[0]) < 0:  # -1: a request without an adapter
            out[indices < 0] = 0
        return out
    out = torch.zeros((tokens, out_dim), dtype=dtype, device=x.device)
    for u in uniq.tolist():
        if u < 0:  # -1: a request without an adapter
            continue
        rows = indices == u
        out[rows] = x[rows] @ weights[u].to(dtype=dtype).t()
    return out


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common = min(outputs.shape[1], output_tensor.shape[1])  # adapter and model may pad differently
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset: int,
                      slice_size: int, add_inputs: bool = True):
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, scaling):
    bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor.repeat_interleave(seq_len_tensor),
                scaling)


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, add_inputs: bool = False):
    bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor.repeat_interleave(seq_len_tensor),
                add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                      batches, max_seq_length, token_nums, slice_offset, slice_size, add_inputs: bool = False):
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor,
                      lora_indices_tensor.repeat_interleave(seq_len_tensor), slice_offset, slice_size,
                      add_inputs)


OPS = {f.__name__: f for f in (bgmv_expand, bgmv_expand_slice, bgmv_shrink, sgmv_expand, sgmv_expand_slice,
                               sgmv_shrink)}


def install() -> None:
    """Point vLLM's CPU punica wrapper at these ops (it calls them through its module globals)."""
    from vllm.lora.punica_wrapper import punica_cpu

    for name, fn in OPS.items():
        setattr(punica_cpu, name, fn)


def register() -> None:
    """vLLM's ``general_plugins`` hook (every vLLM process): install the ops when switched on."""
    if os.environ.get(ENABLE_ENV, "").lower() not in ("1", "true", "yes"):
        return
    install()
    from vllm.logger import init_logger  # vLLM's handler: the line shows in the engine's log

    init_logger("vllm.lorafleet.cpu_lora").info(
        "lorafleet CPU LoRA ops on: one matmul per adapter in the batch instead of per token")
