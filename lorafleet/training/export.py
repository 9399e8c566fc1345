"""Export a registry version as a merged Hugging Face model folder (``platform export name@N
--merged DIR``): the adapter is merged into its base (peft ``merge_and_unload``) in the base's
dtype, the tokenizer and chat template are copied, and the written folder is checked against
the adapter: both answer a few prompts with greedy decoding and must agree token for token.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafleet.core.errors import InputError
from lorafleet.training.errors import TrainingError

__all__ = ["DEFAULT_PROMPTS", "EXPORT_RECORD", "ExportMismatch", "ExportResult", "export_merged"]

DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Where is my order #A1234?",
    "Please reset my password.",
    "Write one sentence about the sea.",
)
EXPORT_RECORD = "lorafleet_export.json"  # written into the folder: which version, base, agreement


class ExportMismatch(TrainingError):
    """The merged model's greedy answers differ from the adapter's on too many prompts."""


@dataclass
class ExportResult:
    ref: str
    dest: Path
    dtype: str
    agreeing: int
    prompts: int
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agreeing / self.prompts if self.prompts else 1.0


def _check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError("--merged", str(dest), "exists and is not an empty folder; refusing to write into it")


def _greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    import torch

    out = []
    for text in prompts:
        enc = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        out.append(ids[0, enc["input_ids"].shape[1]:].tolist())
    return out


def _base_dtype(base_dir: Path) -> str:
    cfg = json.loads((base_dir / "config.json").read_text())
    return str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")


def export_merged(settings: Any, ref: str, dest: Path, *, prompts: list[str] | None = None,
                  max_new_tokens: int = 24, min_agreement: float = 1.0, say=print) -> ExportResult:
    """Write ``ref`` merged into its base to ``dest`` (new or empty) and check greedy agreement.

    Raises :class:`ExportMismatch` (the folder is kept) when fewer than ``min_agreement`` of the
    prompts get the same greedy answer from the merged folder and from base + adapter.
    """
    from lorafleet.registry import open_registry
    from lorafleet.registry.bases import BaseStore

    dest = Path(dest)
    _check_dest(dest)
    if not 0.0 <= min_agreement <= 1.0:
        raise InputError("--min-agreement", min_agreement, "must be between 0 and 1")
    reg = open_registry(settings)
    m = reg.resolve(ref)  # bad input fails here, before the heavy imports

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = BaseStore(settings.layout.bases).require(m.base.name)
    if base.identity.weights_sha256 != m.base.weights_sha256:
        raise InputError("REF", m.ref, f"trained on base {m.base.name} with weights {m.base.weights_sha256[:12]}, "
                         f"but the home's {m.base.name} has {base.identity.weights_sha256[:12]}")
    adapter_dir = reg.materialize(m.ref)  # verified
    base_dir = settings.layout.base(m.base.name)
    dtype = _base_dtype(base_dir)
    prompts = list(prompts or DEFAULT_PROMPTS)

    say(f"merging {m.ref} into {m.base.name} ({dtype})")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    adapter_answers = _greedy(model, tokenizer, prompts, max_new_tokens)
    merged = model.merge_and_unload()

    tmp = dest.parent / f".{dest.name}.export-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)  # tokenizer files and the chat template
        for name in ("chat_template.jinja", "generation_config.json"):
            if (base_dir / name).is_file() and not (tmp / name).exists():
                shutil.copy2(base_dir / name, tmp / name)
        say("checking the merged folder against the adapter (greedy)")
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=getattr(torch, dtype))
        reloaded.eval()
        merged_answers = _greedy(reloaded, AutoTokenizer.from_pretrained(tmp), prompts, max_new_tokens)
        samples = [{"prompt": p, "adapter": tokenizer.decode(a, skip_special_tokens=True),
                    "merged": tokenizer.decode(b, skip_special_tokens=True), "agree": a == b}
                   for p, a, b in zip(prompts, adapter_answers, merged_answers)]
        agreeing = sum(s["agree"] for s in samples)
        record = {"ref": m.ref, "base": m.base.model_dump(mode="json"), "dtype": dtype,
                  "greedy_agreement": {"agreeing": agreeing, "prompts": len(prompts),
                                       "max_new_tokens": max_new_tokens}}
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=1))
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = ExportResult(m.ref, dest, dtype, agreeing, len(prompts), samples)
    if result.agreement < min_agreement:
        raise ExportMismatch(f"{m.ref}: merged and adapter answers agree on {agreeing}/{len(prompts)} prompts "
                             f"(need {min_agreement:.0%}); the merged folder is at {dest}")
    return result
