"""A tiny randomly initialised Llama with the real SmolLM2 tokenizer, for fast tests and demos.

2 layers, hidden 64, one head of 64: vLLM serves it in seconds and peft/TRL train it in
well under a second a step. Its answers are gibberish by design.
"""

from __future__ import annotations

from pathlib import Path

from lorafleet.platform.base_pull import gguf_path

__all__ = ["build_tiny_llama", "make_random_lora"]


def build_tiny_llama(dest: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama (safetensors + the SmolLM2 tokenizer) into ``dest``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


def make_random_lora(base_dir: Path, dest: Path, r: int = 8, scale: float = 1.0, seed: int = 0,
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
