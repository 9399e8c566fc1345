"""Start, health-check and stop one local vLLM OpenAI server for a base model.

vLLM is a separate process reached over HTTP: this module only builds its command line,
waits for ``/health`` and stops it. Used by the tests, the quickstart and `platform serve`.

The engine runs in a process group of its own (its engine-core and worker processes too) and
dies with the process that started it: its API server gets SIGKILL from Linux when that
process dies (a parent-death signal), and a :class:`~lorafleet.engine.process.GroupReaper`
kills the rest of its group, which vLLM leaves running otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from lorafleet.core.config import ConfigModel
from lorafleet.core.hardware import cpu_engine_dtype
from lorafleet.core.settings import Settings
from lorafleet.engine.cpu_lora import cpu_lora_environment
from lorafleet.engine.errors import EngineError
from lorafleet.engine.process import GroupReaper, answers_ok, die_with_parent, end_process_group, free_port

__all__ = ["EngineConfig", "LocalEngine"]


class EngineConfig(ConfigModel):
    """How to start one vLLM engine for one base model."""

    model_dir: Path = Field(description="Hugging Face folder of the base model.")
    served_name: str = Field(description="Model name the engine answers to (the base name).")
    host: str = Field(default="127.0.0.1", description="Bind address; loopback keeps admin endpoints private.")
    port: int | None = Field(default=None, description="Port; None picks a free one.")
    max_loras: int = Field(default=4, ge=1, description="--max-loras")
    max_cpu_loras: int = Field(default=16, ge=1, description="--max-cpu-loras")
    max_lora_rank: int = Field(default=64, ge=1, description="--max-lora-rank")
    max_model_len: int = Field(default=2048, ge=64, description="--max-model-len")
    kvcache_gib: int = Field(default=1, ge=1, description="VLLM_CPU_KVCACHE_SPACE (GiB)")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="--dtype; auto = bfloat16 where this CPU computes it natively, else float32.")
    start_timeout_s: float = Field(default=300.0, gt=0, description="Seconds to wait for /health.")
    log_path: Path | None = Field(default=None, description="Where the engine's output goes.")
    compact_json: bool = Field(
        default=True,
        description="Constrained JSON without free whitespace (xgrammar): small models cannot wander in blanks.",
    )
    cpu_lora_ops: bool = Field(
        default=True, description="lorafleet's per-adapter CPU LoRA ops in the engine (lorafleet.engine.cpu_lora).")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM server arguments.")
    extra_env: dict[str, str] = Field(
        default_factory=dict,
        description="More environment for the engine process (e.g. what switches lorafleet's LoRA resolver on).")

    @classmethod
    def from_settings(cls, settings: Settings, model_dir: Path, served_name: str, **overrides) -> EngineConfig:
        values = dict(
            max_loras=settings.engine_max_loras,
            max_cpu_loras=settings.engine_max_cpu_loras,
            max_lora_rank=settings.engine_max_lora_rank,
            max_model_len=settings.engine_max_model_len,
            cpu_lora_ops=settings.engine_cpu_lora_ops,
            kvcache_gib=settings.engine_kvcache_gib,
            dtype=settings.engine_dtype,
            start_timeout_s=settings.engine_start_timeout_s,
        )
        values.update(overrides)
        return cls(model_dir=model_dir, served_name=served_name, **values)


class LocalEngine:
    """One vLLM OpenAI-compatible server process with LoRA and runtime adapter loading on."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._reaper: GroupReaper | None = None

    @property
    def url(self) -> str:
        """Base URL of the engine's OpenAI API (``.../v1``)."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def use_fresh_port(self) -> bool:
        """Move to a newly picked free port for the next start (a hung process may still hold
        the old one); False, and no change, when the config fixes the port."""
        if self.config.port is not None:
            return False
        old = self.port
        while self.port == old:
            self.port = free_port(self.config.host)
        return True

    @property
    def dtype(self) -> str:
        """The ``--dtype`` this engine starts with (``auto`` resolved on this machine)."""
        return cpu_engine_dtype() if self.config.dtype == "auto" else self.config.dtype

    def command(self) -> list[str]:
        c = self.config
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(c.model_dir),
            "--served-model-name", c.served_name,
            "--host", c.host,
            "--port", str(self.port),
            "--enable-lora",
            "--max-loras", str(c.max_loras),
            "--max-cpu-loras", str(c.max_cpu_loras),
            "--max-lora-rank", str(c.max_lora_rank),
            "--max-model-len", str(c.max_model_len),
            "--dtype", self.dtype,
            *(["--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
              if c.compact_json else []),
            *c.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
            VLLM_CPU_KVCACHE_SPACE=str(self.config.kvcache_gib),
            VLLM_CONFIGURE_LOGGING="1",
            TOKENIZERS_PARALLELISM="false",
        )
        env.update(self.config.extra_env)
        if self.config.cpu_lora_ops:
            env.update(cpu_lora_environment(env.get("VLLM_PLUGINS")))
        return env

    def start(self, wait: bool = True) -> LocalEngine:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.proc is not None:  # exited: clear what is left of its group, its log and its reaper
            self.stop()
        log_path = self.config.log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches its workers too
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - one prctl call, looked up before the fork
        )
        self._reaper = GroupReaper(self.proc.pid)
        if wait:
            self.wait_ready()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout_s: float = 2.0) -> bool:
        return answers_ok(f"{self.root_url}/health", timeout_s)

    def wait_ready(self, cancel: threading.Event | None = None) -> None:
        """Wait until ``/health`` answers; returns early (engine left running) once ``cancel`` is set."""
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise EngineError(f"vLLM engine exited during start-up (code {code}){self._log_hint()}")
            if self.healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise EngineError(
            f"vLLM engine not healthy after {self.config.start_timeout_s:.0f}s{self._log_hint()}"
        )

    def _log_hint(self) -> str:
        return f"; see {self.config.log_path}" if self.config.log_path else ""

    def log_tail(self, max_bytes: int = 8000) -> str:
        path = self.config.log_path
        if path is None or not path.is_file():
            return ""
        data = path.read_bytes()[-max_bytes:]
        return data.decode("utf-8", errors="replace")

    def stop(self, timeout_s: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) group acts on its SIGTERM
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
        if proc is not None:
            end_process_group(proc.pid)
        self._release()

    def kill(self) -> None:
        """SIGKILL the engine's whole process group at once (a hung engine ignores SIGTERM)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            end_process_group(proc.pid, grace_s=1.0)  # anything that left the group's leader behind
        self._release()

    def _release(self) -> None:
        if self._reaper is not None:
            self._reaper.disarm()
            self._reaper = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
