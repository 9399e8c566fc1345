"""Session fixtures shared by every test: an isolated platform home, the tiny random base
registered in it, and a real vLLM engine serving that base.

The engine's log is attached to the report of any failing test that used it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_BASE = "tiny-llama"


@pytest.fixture(scope="session")
def lorafleet_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh platform home for the whole session, exported as LORAFLEET_HOME."""
    home = tmp_path_factory.mktemp("lorafleet-home")
    old = os.environ.get("LORAFLEET_HOME")
    os.environ["LORAFLEET_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("LORAFLEET_HOME", None)
    else:
        os.environ["LORAFLEET_HOME"] = old


@pytest.fixture(scope="session")
def settings(lorafleet_home: Path):
    from lorafleet.core.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder with the real SmolLM2 tokenizer, built once."""
    from lorafleet.platform.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_base(settings, tiny_model_dir: Path):
    """The tiny model registered as base ``tiny-llama`` in the session home (its manifest)."""
    from lorafleet.platform.base_pull import pull_base

    manifest, _ = pull_base(settings, TINY_BASE, tiny_model_dir)
    return manifest


@pytest.fixture(scope="session")
def engine(settings, tiny_base, tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM OpenAI server on the tiny base, with runtime LoRA loading on."""
    from lorafleet.serving.engine import EngineConfig, LocalEngine

    log = tmp_path_factory.mktemp("engine-logs") / "vllm.log"
    config = EngineConfig.from_settings(
        settings, settings.layout.base(TINY_BASE), TINY_BASE, log_path=log, max_lora_rank=64
    )
    eng = LocalEngine(config).start()
    yield eng
    eng.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "engine" in item.fixturenames:
        eng = item.funcargs.get("engine")
        if eng is not None:
            report.sections.append(("vLLM engine log (tail)", eng.log_tail()))


def pytest_collection_modifyitems(config, items):
    """Mark each test by its folder: tests/unit -> unit, tests/integration -> integration, ..."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "integration", "e2e"):
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


def make_lora_adapter(base_dir: Path, dest: Path, r: int = 8, scale: float = 1.0, seed: int = 0,
                      target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> Path:
    """Save a peft LoRA adapter for the model in ``base_dir`` with random (non-zero) weights.

    ``scale`` multiplies every LoRA weight so the adapter's output surely differs from the base.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), init_lora_weights=False,
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(dest)
    return dest
