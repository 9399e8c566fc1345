"""lorafleet's CPU LoRA ops against vLLM's own (``vllm.lora.ops.torch_ops``) on random tensors."""

from __future__ import annotations

import pytest
import torch
from vllm.lora.ops import torch_ops as ref

from lorafleet.engine import cpu_lora

pytestmark = pytest.mark.unit

SLOTS, RANK, HIDDEN, OUT = 3, 8, 32, 48


def _case(indices: list[int], dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(len(indices) * 7 + sum(indices))
    x = torch.randn(len(indices), HIDDEN, generator=g)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, generator=g).to(dtype)   # shrink: (slots, 1, rank, in)
    b = torch.randn(SLOTS, 1, OUT, RANK, generator=g).to(dtype)      # expand: (slots, 1, out, rank)
    return x, a, b, torch.tensor(indices)


@pytest.fixture(params=["stacked", "per-adapter"])
def path(request, monkeypatch):
    """Both ways of serving a batch with several adapters: one matmul over every slot, or one per adapter."""
    if request.param == "per-adapter":
        monkeypatch.setattr(cpu_lora, "STACKED_MACS_PER_ADAPTER", 0)
    return request.param


@pytest.mark.parametrize("indices", [[0] * 5, [2, 2, 2], [0, 1, 2, 1, 0, 2], [1], [2, 0, 1, 2, 1]])
def test_shrink_and_expand_match_vllm(indices, path):
    x, a, b, idx = _case(indices)
    mine, theirs = torch.zeros(len(indices), RANK), torch.zeros(len(indices), RANK)
    cpu_lora.bgmv_shrink(x, a, mine, idx, 0.5)
    ref.bgmv_shrink(x, a, theirs, idx, 0.5)
    torch.testing.assert_close(mine, theirs, rtol=2e-2, atol=2e-2)

    y0 = torch.randn(len(indices), OUT)
    for add in (True, False):
        mine_y, their_y = y0.clone(), y0.clone()
        cpu_lora.bgmv_expand(mine.to(torch.bfloat16), b, mine_y, idx, add)
        ref.bgmv_expand(theirs.to(torch.bfloat16), b, their_y, idx, add)
        torch.testing.assert_close(mine_y, their_y, rtol=2e-2, atol=5e-2)


def test_expand_slice_and_prefill_variants_match_vllm(path):
    seq_lens, lora_per_seq = torch.tensor([3, 1, 2]), torch.tensor([1, 0, 1])
    tokens = int(seq_lens.sum())
    x, a, b, _ = _case([0] * tokens)
    start = torch.tensor([0, 3, 4])
    meta = (start, seq_lens, lora_per_seq, 3, 3, tokens)
    mine, theirs = torch.zeros(tokens, RANK), torch.zeros(tokens, RANK)
    cpu_lora.sgmv_shrink(x, a, mine, *meta, 1.0)
    ref.sgmv_shrink(x, a, theirs, *meta, 1.0)
    torch.testing.assert_close(mine, theirs, rtol=2e-2, atol=2e-2)
    y0 = torch.randn(tokens, OUT + 16)
    mine_y, their_y = y0.clone(), y0.clone()
    cpu_lora.sgmv_expand_slice(theirs, b, mine_y, *meta, 8, OUT, True)
    ref.sgmv_expand_slice(theirs, b, their_y, *meta, 8, OUT, True)
    torch.testing.assert_close(mine_y, their_y, rtol=2e-2, atol=5e-2)
    mine_y, their_y = y0.clone(), y0.clone()
    cpu_lora.sgmv_expand(theirs, b, mine_y, *meta, False)
    ref.sgmv_expand(theirs, b, their_y, *meta, False)
    torch.testing.assert_close(mine_y, their_y, rtol=2e-2, atol=5e-2)


def test_a_base_token_gets_no_adapter(path):
    """-1 marks a request without an adapter: its rows get nothing; the others match vLLM's op."""
    x, a, b, idx = _case([-1, 0, -1, 2])
    mine, theirs = torch.zeros(4, RANK), torch.zeros(4, RANK)
    cpu_lora.bgmv_shrink(x, a, mine, idx, 1.0)
    ref.bgmv_shrink(x, a, theirs, idx, 1.0)
    assert torch.count_nonzero(mine[[0, 2]]) == 0
    torch.testing.assert_close(mine[[1, 3]], theirs[[1, 3]], rtol=2e-2, atol=2e-2)
    y0 = torch.randn(4, OUT)
    y = y0.clone()
    cpu_lora.bgmv_expand(mine.to(torch.bfloat16), b, y, idx, True)
    torch.testing.assert_close(y[[0, 2]], y0[[0, 2]])      # base rows untouched
    assert torch.count_nonzero(y[[1, 3]] - y0[[1, 3]]) > 0   # adapter rows changed


def test_install_points_vllms_cpu_wrapper_at_these_ops(monkeypatch):
    from vllm.lora.punica_wrapper import punica_cpu

    for name in cpu_lora.OPS:
        monkeypatch.setattr(punica_cpu, name, getattr(punica_cpu, name))  # restored after the test
    monkeypatch.delenv(cpu_lora.ENABLE_ENV, raising=False)
    cpu_lora.register()
    assert punica_cpu.bgmv_shrink is ref.bgmv_shrink
    monkeypatch.setenv(cpu_lora.ENABLE_ENV, "1")
    cpu_lora.register()
    assert all(getattr(punica_cpu, n) is f for n, f in cpu_lora.OPS.items())
