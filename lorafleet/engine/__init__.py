"""The vLLM engine process: launch, supervise, health. Used by training's evaluation and by
serving, so neither imports the other."""

from lorafleet.engine.errors import EngineError
from lorafleet.engine.process import answers_ok, end_process_group, free_port
from lorafleet.engine.vllm import EngineConfig, LocalEngine

__all__ = ["EngineConfig", "EngineError", "LocalEngine", "answers_ok", "end_process_group", "free_port"]
