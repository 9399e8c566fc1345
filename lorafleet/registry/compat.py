"""Does an adapter fit a base (and an engine)? Checked before an adapter is pushed and
before it ever reaches vLLM, which would otherwise die at start-up or answer a 500."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lorafleet.registry.bases import BaseManifest
from lorafleet.registry.errors import IncompatibleAdapter
from lorafleet.registry.manifest import AdapterManifest, PeftInfo

__all__ = ["check_compatibility", "read_peft_info", "ADAPTER_CONFIG", "WEIGHT_FILES"]

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_TENSOR = re.compile(r"layers\.(\d+)\..*?\.?([A-Za-z0-9_]+)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


def read_peft_info(folder: Path) -> PeftInfo:
    cfg_path = folder / ADAPTER_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncompatibleAdapter(f"{folder}: no {ADAPTER_CONFIG}: not a peft adapter folder") from None
    except json.JSONDecodeError as err:
        raise IncompatibleAdapter(f"{cfg_path}: not valid JSON ({err})") from None
    targets = cfg.get("target_modules") or []
    return PeftInfo(
        peft_type=str(cfg.get("peft_type", "")), r=int(cfg.get("r", 0)), lora_alpha=float(cfg.get("lora_alpha", 0)),
        lora_dropout=float(cfg.get("lora_dropout") or 0.0),
        target_modules=sorted(targets) if isinstance(targets, list) else [str(targets)],
        base_model_name_or_path=cfg.get("base_model_name_or_path"),
    )


def _tensor_shapes(folder: Path) -> dict[str, list[int]]:
    st = folder / "adapter_model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="numpy") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    if (folder / "adapter_model.bin").is_file():
        return {}  # pickled weights: shapes are checked by the engine only
    raise IncompatibleAdapter(f"{folder}: no adapter weights ({' or '.join(WEIGHT_FILES)})")


def check_compatibility(adapter: Path | AdapterManifest, base: BaseManifest, max_lora_rank: int | None = None,
                        folder: Path | None = None) -> None:
    """Raise :class:`IncompatibleAdapter` naming the first mismatch.

    ``adapter`` is a folder, or a manifest (then its recorded base identity is compared
    too, and ``folder`` may give its files for the tensor-shape check).
    """
    if isinstance(adapter, AdapterManifest):
        ident, want = adapter.base, base.identity
        for field in ("weights_sha256", "tokenizer_sha256"):
            if getattr(ident, field) != getattr(want, field):
                raise IncompatibleAdapter(
                    f"{adapter.ref} was trained on base {ident.name!r} ({field} {getattr(ident, field)[:12]}), "
                    f"not on {want.name!r} ({getattr(want, field)[:12]})")
        info = adapter.peft
    else:
        folder = adapter
        info = read_peft_info(folder)
    if info.peft_type.upper() != "LORA":
        raise IncompatibleAdapter(f"peft type {info.peft_type!r} is not supported (only LORA)")
    if info.r < 1:
        raise IncompatibleAdapter(f"rank r={info.r} is not a valid LoRA rank")
    if max_lora_rank is not None and info.r > max_lora_rank:
        raise IncompatibleAdapter(f"rank r={info.r} is above the engine's max LoRA rank {max_lora_rank}")
    linear = base.linear_modules
    for target in info.target_modules:
        if target in linear:
            continue
        try:
            matched = any(re.fullmatch(target, n) or re.search(target, n) for n in linear)
        except re.error:
            matched = False
        if not matched:
            raise IncompatibleAdapter(f"target module {target!r} does not exist in base {base.name!r} "
                                      f"(its Linear layers: {', '.join(sorted(linear))})")
    if folder is None:
        return
    for key, shape in _tensor_shapes(folder).items():
        m = _TENSOR.search(key)
        if not m:
            continue
        layer, module, ab = int(m[1]), m[2], m[3]
        if layer >= base.num_hidden_layers:
            raise IncompatibleAdapter(f"tensor {key}: layer {layer} does not exist (base has {base.num_hidden_layers})")
        if module not in linear:
            raise IncompatibleAdapter(f"tensor {key}: module {module!r} does not exist in base {base.name!r}")
        in_f, out_f = linear[module]
        want = [info.r, in_f] if ab == "A" else [out_f, info.r]
        if shape != want:
            raise IncompatibleAdapter(f"tensor {key} has shape {shape}, base {base.name!r} needs {want}")
