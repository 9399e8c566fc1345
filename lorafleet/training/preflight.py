"""Checks of a config against the platform before any compute: the base exists, the target
modules are Linear layers of it, the data passes every check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorafleet.core.settings import Settings
from lorafleet.training.config import TrainConfig
from lorafleet.training.data import DataReport, check_data
from lorafleet.training.errors import TrainConfigError

__all__ = ["require_base", "check_target_modules", "load_tokenizer", "preflight"]


def require_base(settings: Settings, name: str) -> tuple[Any, Path]:
    """The base's manifest and folder; a missing base is a config error naming ``base``."""
    from lorafleet.registry.bases import BaseStore
    from lorafleet.registry.errors import NotFound

    try:
        manifest = BaseStore(settings.layout.bases).require(name)
    except NotFound as err:
        raise TrainConfigError(f"base={name!r}: {err}") from None
    return manifest, settings.layout.base(name)


def check_target_modules(cfg: TrainConfig, manifest: Any) -> None:
    have = sorted(manifest.linear_modules)
    missing = [m for m in cfg.peft.target_modules if m not in manifest.linear_modules]
    if missing:
        raise TrainConfigError(
            f"peft.target_modules={missing!r}: not Linear layers of base {manifest.name!r} (it has: {', '.join(have)})"
        )


def load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_dir)


def preflight(cfg: TrainConfig, settings: Settings) -> tuple[Any, Path, DataReport]:
    """Base + target modules + data checks. Returns (base manifest, base folder, data report)."""
    manifest, base_dir = require_base(settings, cfg.base)
    check_target_modules(cfg, manifest)
    report = check_data(cfg, load_tokenizer(base_dir))
    return manifest, base_dir, report
