"""Session fixtures shared by every test: an isolated platform home, the tiny random base
registered in it, and a real vLLM engine serving that base.

The engine's log is attached to the report of any failing test that used it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import make_random_lora as make_lora_adapter  # noqa: F401 (used by tests)

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
    from tests.tiny import build_tiny_llama

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
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

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
