"""Which compute precision a training worker uses: bf16 only where the hardware runs it fast.

bf16 is a win only with native support. On a CPU with AVX512-BF16 or AMX, oneDNN's bf16 kernels
made a SmolLM2 LoRA step about 25% faster than fp32; on an AVX2-only CPU (no oneDNN bf16) the
same matmuls fall back to a generic kernel: a 512 x 576 x 1536 matmul took 58 ms in bf16 against
7.6 ms in fp32 (AMD EPYC, 2 cores, 2026-12-07), and a training step went from 3.8 s to over 60 s.
So ``bf16_autocast: auto`` (the default) asks the worker's own device, not the driver's: in a Ray
cluster the two can differ. QLoRA's compute dtype follows the same answer.
"""

from __future__ import annotations

from typing import Literal

from lorafleet.core.hardware import cpu_has_native_bf16

__all__ = ["Bf16Setting", "bf16_is_fast", "use_bf16"]

Bf16Setting = bool | Literal["auto"]


def bf16_is_fast(use_gpu: bool) -> bool:
    """True when this process's device has native bf16 kernels (CUDA with bf16; the CPU: core.hardware)."""
    if use_gpu:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_has_native_bf16()


def use_bf16(setting: Bf16Setting, use_gpu: bool) -> bool:
    """The config's ``bf16_autocast`` resolved on the worker: ``auto`` means 'where it is fast'."""
    return bf16_is_fast(use_gpu) if setting == "auto" else bool(setting)
