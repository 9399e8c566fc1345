"""Core helpers: safe names, atomic writes, staged folders, config loading, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from lorafleet.core.config import ConfigError, ConfigModel
from lorafleet.core.errors import InputError
from lorafleet.core.fsutil import atomic_write_text, staged_dir
from lorafleet.core.names import check_name
from lorafleet.core.settings import Settings


@pytest.mark.parametrize("name", ["support-intents", "a", "smollm2-135m-instruct", "x_1.2"])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "with space", "Caps", "-lead", "a..b", "x" * 65])
def test_unsafe_names_fail_naming_the_value(name: str) -> None:
    with pytest.raises(InputError) as info:
        check_name(name, "--name")
    assert "--name" in str(info.value) and repr(name) in str(info.value)


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    atomic_write_text(target, "a: 1\n")
    atomic_write_text(target, "a: 2\n")
    assert target.read_text() == "a: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["routes.yaml"]


def test_staged_dir_publishes_whole_or_nothing(tmp_path: Path) -> None:
    final = tmp_path / "v1"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as stage:
            (stage / "weights").write_bytes(b"x" * 100)
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with staged_dir(final) as stage:
        (stage / "weights").write_bytes(b"x" * 100)
    assert (final / "weights").stat().st_size == 100
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]


class _Demo(ConfigModel):
    rank: int = Field(default=16, ge=1, description="LoRA rank.")


def test_config_rejects_unknown_keys_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rank: 8\nranq: 4\n")
    with pytest.raises(ConfigError) as info:
        _Demo.from_yaml(path)
    assert "ranq" in str(info.value) and str(path) in str(info.value)


def test_config_rejects_bad_values_showing_them(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rank: 0\n")
    with pytest.raises(ConfigError) as info:
        _Demo.from_yaml(path)
    assert "rank" in str(info.value) and "0" in str(info.value)


def test_settings_read_the_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LORAFLEET_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("LORAFLEET_ENGINE_MAX_LORAS", "7")
    s = Settings()
    assert s.home == (tmp_path / "h").resolve()
    assert s.engine_max_loras == 7
    assert s.layout.routes_file == s.home / "routes.yaml"
