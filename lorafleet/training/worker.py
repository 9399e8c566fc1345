"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (each worker is a Ray actor).

It builds the model (fp32, or 4-bit NF4 with double quantization and bf16 compute for QLoRA),
wraps it in a TRL ``SFTTrainer`` (loss on the assistant completion only) or ``DPOTrainer``
with a peft LoRA config, resumes from Ray's latest checkpoint when there is one, reports a
checkpoint every ``checkpoint_every_steps`` steps, and finally reports the adapter folder
with the held-out loss of the adapter and of the base.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["train_loop", "build_trainer", "build_datasets", "load_model", "FINAL_MARKER"]

FINAL_MARKER = "lorafleet_final.json"


def _read(path: str | None) -> list[dict]:
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_datasets(cfg: dict) -> tuple[Any, Any]:
    """HF datasets in TRL's conversational formats (SFT: prompt/completion, DPO: prompt/chosen/rejected)."""
    from datasets import Dataset

    def sft(rows):
        return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]

    def dpo(rows):
        def msgs(v, role):
            return [{"role": role, "content": v}] if isinstance(v, str) else v

        return [{"prompt": msgs(r["prompt"], "user"), "chosen": msgs(r["chosen"], "assistant"),
                 "rejected": msgs(r["rejected"], "assistant")} for r in rows]

    shape = dpo if cfg["method"] == "dpo" else sft
    train = Dataset.from_list(shape(_read(cfg["data"]["train"])))
    ev_rows = _read(cfg["data"].get("eval"))
    return train, (Dataset.from_list(shape(ev_rows)) if ev_rows else None)


def load_model(base_dir: str, quantization: str, use_gpu: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quantization == "nf4":
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                     device_map={"": "cuda" if use_gpu else "cpu"})
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)


def _trainer_args(cfg: dict, out_dir: str, world_size: int) -> dict:
    max_steps = cfg.get("max_steps") or -1
    return dict(
        output_dir=out_dir,
        per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        learning_rate=cfg["learning_rate"],
        num_train_epochs=cfg["epochs"],
        max_steps=max_steps,
        warmup_steps=cfg["warmup_ratio"],  # transformers 5: a float < 1 is a ratio
        lr_scheduler_type=cfg["scheduler"],
        logging_steps=cfg["logging_steps"],
        save_strategy="steps",
        save_steps=cfg["checkpoint_every_steps"],
        save_total_limit=2,
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        use_cpu=not cfg["use_gpu"],
        bf16=cfg["quantization"] == "nf4" or cfg["bf16_autocast"],
        report_to=[],
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        max_length=cfg["max_seq_length"],
    )


def build_trainer(cfg: dict, out_dir: str, callbacks: list, world: int = 1) -> Any:
    """The TRL trainer (SFT: loss on the assistant completion only; DPO) with the peft LoRA config."""
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback as HFProgress

    tokenizer = AutoTokenizer.from_pretrained(cfg["base_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_model(cfg["base_dir"], cfg["quantization"], cfg["use_gpu"])
    peft_cfg = LoraConfig(r=cfg["peft"]["r"], lora_alpha=cfg["peft"]["alpha"], lora_dropout=cfg["peft"]["dropout"],
                          target_modules=cfg["peft"]["target_modules"], task_type="CAUSAL_LM")
    train_ds, eval_ds = build_datasets(cfg)
    args = _trainer_args(cfg, out_dir, world)
    if cfg["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        args.update(beta=cfg["dpo_beta"])
        trainer = DPOTrainer(model=model, args=DPOConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=peft_cfg, callbacks=callbacks)
    else:
        from trl import SFTConfig, SFTTrainer

        args.update(completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=peft_cfg, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the driver draws progress and loss
    trainer.remove_callback(HFProgress)
    return trainer


def _renice() -> None:
    """Ray starts workers at niceness 15; a training worker competes on equal terms with an in-process run."""
    tasks = Path("/proc/self/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]):
        try:  # niceness is per thread on Linux; Ray Train runs this function in a thread of its own
            os.setpriority(os.PRIO_PROCESS, tid, 0)
        except (PermissionError, OSError):
            pass


def train_loop(cfg: dict) -> None:
    """Entry point of each Ray Train worker."""
    import ray
    import ray.train
    import torch
    from transformers import TrainerCallback

    from lorafleet.training.progress import ProgressCallback

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    _renice()
    torch.set_num_threads(cfg["cpus_per_worker"])
    torch.manual_seed(cfg["seed"])
    actor = cfg.get("progress_actor")
    if actor is not None:  # which Ray node each rank runs on (recorded in the manifest's training metrics)
        actor.worker.remote(rank, ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), os.getpid())
    if cfg.get("pid_file") and rank == 0:
        Path(cfg["pid_file"]).write_text(str(os.getpid()))

    resume_dir = None
    ckpt = ray.train.get_checkpoint()
    local = Path(tempfile.mkdtemp(prefix="lorafleet-train-"))
    if ckpt is not None:
        resume_dir = ckpt.to_directory(str(local / "resume"))
    if actor is not None and rank == 0:
        step0 = json.loads((Path(resume_dir) / "trainer_state.json").read_text())["global_step"] if resume_dir else 0
        actor.start.remote(os.getpid(), step0)

    out_dir = str(local / "hf")

    class ReportCheckpoints(TrainerCallback):
        """Hand each saved HF checkpoint (adapter + optimizer + scheduler + RNG) to Ray storage."""

        def on_save(self, a, state, control, **kw):
            path = Path(out_dir) / f"checkpoint-{state.global_step}"
            metrics = {"step": state.global_step, "loss": next(
                (h["loss"] for h in reversed(state.log_history) if "loss" in h), None)}
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(path)) if rank == 0 else None)
            if actor is not None and rank == 0:
                actor.saved.remote()

    callbacks = [ReportCheckpoints()] + ([ProgressCallback(actor, rank)] if actor is not None else [])
    trainer = build_trainer(cfg, out_dir, callbacks, world)
    result = trainer.train(resume_from_checkpoint=resume_dir)

    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "global_step": int(result.global_step),
                               "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
                               "num_input_tokens_seen": int(trainer.state.num_input_tokens_seen or 0)}
    if trainer.eval_dataset is not None and cfg["method"] == "sft":
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
        with trainer.model.disable_adapter():
            metrics["base_eval_loss"] = float(trainer.evaluate()["eval_loss"])
    final = local / "final"
    if rank == 0:
        trainer.model.save_pretrained(str(final))
        (final / FINAL_MARKER).write_text(json.dumps(metrics))
    ray.train.report({**metrics, "final": True},
                     checkpoint=ray.train.Checkpoint.from_directory(str(final)) if rank == 0 else None)
    import shutil

    shutil.rmtree(local, ignore_errors=True)  # reported checkpoints were uploaded to Ray storage
