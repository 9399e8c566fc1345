"""Training: data checks and fingerprint, Ray Train jobs (SFT, DPO; LoRA, QLoRA),
evaluation on a real vLLM engine, the gate, and the hand-off to the registry.

Heavy libraries (torch, ray, trl, transformers, vllm) are imported inside functions only.
"""

__all__: list[str] = []
