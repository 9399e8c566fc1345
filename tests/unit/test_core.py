"""Core helpers: safe names, atomic writes, staged folders, config loading, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from lorafleet.core.config import ConfigError, ConfigModel
from lorafleet.core.errors import InputError
from lorafleet.core.fsutil import atomic_write_text, staged_dir
from lorafleet.core.names import check_name
from lorafleet.core.settings import Settings, get_settings


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


def test_native_bf16_read_from_cpu_flags(tmp_path):
    """bf16 counts as native with AVX512 BW/VL/DQ, AVX512-BF16, AMX or ARM's bf16; not on AVX2 alone."""
    from lorafleet.core.hardware import cpu_flags, cpu_has_native_bf16

    avx2 = "fpu sse sse2 avx avx2 fma f16c"
    assert not cpu_has_native_bf16(frozenset(avx2.split()))
    assert cpu_has_native_bf16(frozenset(f"{avx2} avx512f avx512bw avx512vl avx512dq".split()))
    assert cpu_has_native_bf16(frozenset(f"{avx2} amx_bf16".split()))
    assert cpu_has_native_bf16(frozenset("fp asimd bf16".split()))
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {avx2}\n\nprocessor\t: 1\nflags\t\t: {avx2}\n")
    assert cpu_flags(info) == frozenset(avx2.split())
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_malloc_read_from_the_process_maps(tmp_path):
    """The allocator a process runs on, from the libraries mapped into it; libc when none is preloaded."""
    from lorafleet.core.hardware import malloc_in_use

    maps = tmp_path / "maps"
    libc = "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    maps.write_text(libc)
    assert malloc_in_use(maps) == "libc"
    maps.write_text("7e00-7e01 r-xp 00000000 08:01 2 /venv/site-packages/ray/core/libjemalloc.so\n" + libc)
    assert malloc_in_use(maps) == "jemalloc"
    maps.write_text("7e00-7e01 r-xp 00000000 08:01 3 /usr/lib/libtcmalloc_minimal.so.4\n" + libc)
    assert malloc_in_use(maps) == "tcmalloc"
    assert malloc_in_use(tmp_path / "absent") == "unknown"


def test_engine_dtype_auto_follows_the_cpu(settings, tmp_path):
    """The engine starts in bfloat16 only where the CPU computes it natively; a setting forces either."""
    from lorafleet.core.hardware import cpu_has_native_bf16
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    def dtype_flag(**over) -> str:
        cmd = LocalEngine(EngineConfig.from_settings(settings, tmp_path, "b", port=1, **over)).command()
        return cmd[cmd.index("--dtype") + 1]

    assert dtype_flag() == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert dtype_flag(dtype="float32") == "float32" and dtype_flag(dtype="bfloat16") == "bfloat16"


def test_a_bad_setting_is_one_line_naming_it_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bad LORAFLEET_* value is a project error naming the field and the value; the CLI says it in one
    line with exit code 2 (it was a pydantic traceback and exit 1)."""
    import subprocess
    import sys

    monkeypatch.setenv("LORAFLEET_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("LORAFLEET_ENGINE_DTYPE", "half")
    with pytest.raises(ConfigError, match=r"engine_dtype: .*'auto', 'bfloat16' or 'float32' \(got 'half'\)"):
        get_settings()
    out = subprocess.run([sys.executable, "-c", "from lorafleet.platform.cli import main; main()", "status"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "engine_dtype" in out.stderr, out.stderr
