"""lorafleet: one base LLM, many LoRA adapters, trained on Ray, served by vLLM."""

__all__ = ["__version__"]
__version__ = "0.1.0"
