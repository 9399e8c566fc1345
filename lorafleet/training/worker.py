"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (each worker is a Ray actor).

It builds the model (fp32, or 4-bit NF4 with double quantization for QLoRA), picks bf16 or fp32
compute on the worker's own device (:mod:`lorafleet.training.precision`),
starts a fresh peft LoRA or continues the parent adapter (``init_from``), hands both to the
config's training method (:mod:`lorafleet.training.methods`: dataset shaping and the TRL
trainer), evaluates on the held-out rows every ``eval_every_steps`` with optional early
stopping (the best checkpoint is loaded at the end), resumes from Ray's latest checkpoint when
there is one, reports a checkpoint every ``checkpoint_every_steps`` steps, and finally reports
the adapter folder with the method's final metrics and the train/eval loss curve.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lorafleet.core.hardware import malloc_in_use

__all__ = ["FINAL_MARKER", "build_datasets", "build_trainer", "load_model", "loss_curve", "score_only_labelled_tokens",
           "train_loop"]

FINAL_MARKER = "lorafleet_final.json"


def _read(path: str | None) -> list[dict]:
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_datasets(cfg: dict) -> tuple[Any, Any]:
    """HF datasets in the method's TRL format (SFT: prompt/completion, DPO: prompt/chosen/rejected)."""
    from datasets import Dataset

    from lorafleet.training.methods import get_method

    shape = get_method(cfg["method"]).shape_rows
    train = Dataset.from_list(shape(_read(cfg["data"]["train"])))
    ev_rows = _read(cfg["data"].get("eval"))[: cfg.get("eval", {}).get("max_rows")]  # eval.max_rows: the loss too
    return train, (Dataset.from_list(shape(ev_rows)) if ev_rows else None)


def load_model(base_dir: str, quantization: str, use_gpu: bool, bf16: bool = True, per_row: bool = False) -> Any:
    """The base in fp32, or for QLoRA in 4-bit NF4 computing in bf16 (``bf16``) or fp32. ``per_row``:
    attention per row of a padding-free batch (``training/attention.py``) instead of sdpa's."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from lorafleet.training import attention

    attn = attention.register() if per_row else "sdpa"

    if quantization == "nf4":
        dtype = torch.bfloat16 if bf16 else torch.float32
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=bnb, dtype=dtype,
                                                     device_map={"": "cuda" if use_gpu else "cpu"},
                                                     attn_implementation=attn)
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation=attn)
    if bf16:
        _frozen_linear_weights_in_bf16(model)
    return model


def _frozen_linear_weights_in_bf16(model: Any) -> None:
    """The decoder layers' linear weights (frozen under LoRA) stored in bf16.

    bf16 autocast multiplies them in bf16 anyway, but casts each fp32 weight again at every use,
    forward and backward (autocast caches casts only of weights that require grad): SmolLM2's
    106M layer parameters read and rewritten several times a step. Stored in bf16, the products skip the
    casts; the embeddings, norms and the LoRA weights stay fp32. On support-intents with
    SmolLM2 this made steps ~10% faster on a 2-core AVX512-BF16 CPU, for the same arithmetic.
    """
    import torch

    for layer in getattr(getattr(model, "model", None), "layers", []):
        for module in layer.modules():
            if type(module) is torch.nn.Linear:
                module.weight.data = module.weight.data.to(torch.bfloat16)


def _bf16(cfg: dict) -> bool:
    """bf16 autocast (and QLoRA's compute dtype), decided on this worker's own device."""
    from lorafleet.training.precision import use_bf16

    return use_bf16(cfg.get("bf16_autocast", "auto"), cfg["use_gpu"])


def _trainer_args(cfg: dict, out_dir: str) -> dict:
    """The ``TrainingArguments`` keywords every method shares."""
    max_steps = cfg.get("max_steps") or -1
    args = dict(
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
        bf16=_bf16(cfg),
        gradient_checkpointing=cfg.get("gradient_checkpointing", False),  # TRL turns it on unless told
        neftune_noise_alpha=cfg.get("neftune_noise_alpha"),
        report_to=[],
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        max_length=cfg["max_seq_length"],
    )
    if cfg.get("eval_every_steps"):
        args.update(eval_strategy="steps", eval_steps=cfg["eval_every_steps"])
    if cfg.get("early_stopping_patience"):
        # the best checkpoint (by held-out loss) is kept by the rotation and loaded when training ends
        args.update(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False)
    return args


def _start_model(cfg: dict) -> tuple[Any, Any]:
    """(model, peft config): the base with a fresh LoRA config, or the parent adapter made trainable."""
    from peft import LoraConfig, PeftModel

    # flat (padding-free or packed) rows on the CPU: per-row attention (GPUs' sdpa kernels handle the flat sequence)
    per_row = bool((cfg.get("padding_free") or cfg.get("packing")) and not cfg["use_gpu"])
    model = load_model(cfg["base_dir"], cfg["quantization"], cfg["use_gpu"], _bf16(cfg), per_row)
    if cfg.get("init_from_dir"):
        return PeftModel.from_pretrained(model, cfg["init_from_dir"], is_trainable=True), None
    peft_cfg = LoraConfig(r=cfg["peft"]["r"], lora_alpha=cfg["peft"]["alpha"], lora_dropout=cfg["peft"]["dropout"],
                          target_modules=cfg["peft"]["target_modules"], task_type="CAUSAL_LM")
    return model, peft_cfg


def score_only_labelled_tokens() -> None:
    """Make TRL's fused LM head score only the labelled positions (the completion) on the CPU.

    TRL scores only those on Triton devices and every position elsewhere, so that compilers such
    as Neuron's see fixed tile shapes. Nothing recompiles on the CPU, where the vocabulary
    projection of the prompt tokens is pure waste: on support-intents (a 49k vocabulary, a third
    of each row is the completion) a step takes 20-30% less time for the same loss, gradients
    and metrics (``benchmarks/train_packing.py``). A no-op once applied, or if TRL moves the hook.
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "lorafleet_cpu_compact", False):
        return

    def compact(device: Any) -> bool:
        return device.type == "cpu" or original(device)

    compact.lorafleet_cpu_compact = True
    trl_utils._use_triton = compact


def build_trainer(cfg: dict, out_dir: str, callbacks: list, world: int = 1) -> Any:
    """The config's method's TRL trainer over a fresh or continued (``init_from_dir``) LoRA adapter."""
    from transformers import AutoTokenizer, EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HFProgress

    from lorafleet.training.methods import get_method

    tokenizer = AutoTokenizer.from_pretrained(cfg["base_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model, peft_cfg = _start_model(cfg)
    train_ds, eval_ds = build_datasets(cfg)
    callbacks = list(callbacks)
    if cfg.get("early_stopping_patience"):
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg["early_stopping_patience"],
                                               early_stopping_threshold=cfg.get("early_stopping_threshold", 0.0)))
    method = get_method(cfg["method"])
    score_only_labelled_tokens()
    trainer = method.build_trainer(model, _trainer_args(cfg, out_dir), train_ds, eval_ds, tokenizer, peft_cfg,
                                   callbacks, cfg)
    trainer.remove_callback(PrinterCallback)  # the driver draws progress and loss
    trainer.remove_callback(HFProgress)
    if cfg.get("loraplus_lr_ratio"):
        trainer.optimizer = loraplus_optimizer(trainer, cfg["loraplus_lr_ratio"])
    return trainer


def loraplus_optimizer(trainer: Any, ratio: float) -> Any:
    """LoRA+ (peft's ``create_loraplus_optimizer``): the trainer's own optimizer class and settings,
    with the LoRA B matrices at ``ratio`` x the learning rate. The trainer builds its schedule on it."""
    from peft.optimizers import create_loraplus_optimizer

    cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr", trainer.args.learning_rate)
    return create_loraplus_optimizer(trainer.model, cls, lr=lr, loraplus_lr_ratio=ratio,
                                     loraplus_weight_decay=trainer.args.weight_decay, **kwargs)


def loss_curve(log_history: list[dict]) -> dict[str, list[list[float]]]:
    """``{"train": [[step, loss], ...], "eval": [[step, eval_loss], ...]}`` from a trainer's log history."""
    train = [[int(h["step"]), round(float(h["loss"]), 5)] for h in log_history if "loss" in h and "step" in h]
    ev = [[int(h["step"]), round(float(h["eval_loss"]), 5)] for h in log_history if "eval_loss" in h and "step" in h]
    return {"train": train, "eval": ev}


def _renice() -> None:
    """Ray starts workers at niceness 15; a training worker competes on equal terms with an in-process run."""
    tasks = Path("/proc/self/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]):
        try:  # niceness is per thread on Linux; Ray Train runs this function in a thread of its own
            os.setpriority(os.PRIO_PROCESS, tid, 0)
        except (PermissionError, OSError):
            pass


def _write_files(files: dict[str, bytes], dest: Path) -> Path:
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def _best_step(state: Any) -> int | None:
    best = getattr(state, "best_model_checkpoint", None)
    if not best:
        return None
    try:
        return int(Path(best).name.rpartition("-")[2])
    except ValueError:
        return None


def train_loop(cfg: dict) -> None:
    """Entry point of each Ray Train worker."""
    import ray
    import ray.train
    import torch
    from transformers import TrainerCallback

    from lorafleet.training.methods import get_method
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
    if cfg.get("init_adapter_files"):  # the parent adapter's files travel in the payload (no shared disk)
        cfg = dict(cfg, init_from_dir=str(_write_files(cfg["init_adapter_files"], local / "parent")))
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

    if world == 1:  # Ray sets LOCAL_RANK, so accelerate would wrap one worker's model in DDP for nothing
        os.environ.pop("LOCAL_RANK", None)
    callbacks = [ReportCheckpoints()] + ([ProgressCallback(actor, rank)] if actor is not None else [])
    trainer = build_trainer(cfg, out_dir, callbacks, world)
    result = trainer.train(resume_from_checkpoint=resume_dir)

    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "global_step": int(result.global_step),
                               "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
                               "precision": "bf16" if _bf16(cfg) else "fp32", "malloc": malloc_in_use(),
                               "num_input_tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
                               "loss_curve": loss_curve(trainer.state.log_history)}
    if cfg.get("early_stopping_patience"):
        max_steps = int(trainer.state.max_steps or 0)
        metrics.update(best_step=_best_step(trainer.state), stopped_early=int(result.global_step) < max_steps,
                       pushed_checkpoint="best" if _best_step(trainer.state) is not None else "last")
    if trainer.eval_dataset is not None:
        metrics.update(get_method(cfg["method"]).final_metrics(trainer))
    final = local / "final"
    if rank == 0:
        trainer.model.save_pretrained(str(final), selected_adapters=["default"])
        (final / FINAL_MARKER).write_text(json.dumps(metrics))
    ray.train.report({k: v for k, v in metrics.items() if k != "loss_curve"} | {"final": True},
                     checkpoint=ray.train.Checkpoint.from_directory(str(final)) if rank == 0 else None)
    import shutil

    shutil.rmtree(local, ignore_errors=True)  # reported checkpoints were uploaded to Ray storage
