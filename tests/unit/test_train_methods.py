"""The trainer the Ray workers build, run in-process on the tiny base for a few steps:
QLoRA (4-bit NF4 base via bitsandbytes on the CPU) and DPO; the method registry; packing,
eval-during-training with early stopping, continued training (init_from) and its lineage;
the merged export; and the CLI's `data check`."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from typer.testing import CliRunner

from lorafleet.training.config import load_train_config
from lorafleet.training.job import job_payload
from lorafleet.training.worker import build_trainer
from tests.tiny import make_random_lora

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_qlora_nf4_trains_and_saves_a_lora_adapter(settings, tiny_base, tmp_path):
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            ["base=tiny-llama", "max_steps=2", "quantization=nf4", "data.eval=null", "batch_size=2",
                             "checkpoint_every_steps=100", "cpus_per_worker=1", "peft.r=8"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    q_proj = trainer.model.get_base_model().model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    import torch

    from lorafleet.training.precision import bf16_is_fast  # computes in bf16 only where bf16 is fast

    assert q_proj.base_layer.compute_dtype == (torch.bfloat16 if bf16_is_fast(use_gpu=False) else torch.float32)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
    trainer.model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_dpo_trains_on_preference_rows(settings, tiny_base, tmp_path):
    cfg = load_train_config(EXAMPLES / "dpo-support" / "train.yaml",
                            ["base=tiny-llama", "max_steps=2", "batch_size=2", "checkpoint_every_steps=100",
                             "data.eval=null", "cpus_per_worker=1", "init_from=null"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    assert type(trainer).__name__ == "DPOTrainer"
    result = trainer.train()
    assert result.global_step == 2
    assert 0.5 < result.training_loss < 0.9  # near log(2) for a policy starting equal to its reference


def test_cli_data_check(settings, tiny_base, tmp_path):
    from lorafleet.platform.cli import app

    runner = CliRunner()
    config = EXAMPLES / "support-intents" / "train.yaml"
    ok = runner.invoke(app, ["data", "check", str(config), "--set", "base=tiny-llama"])
    assert ok.exit_code == 0, ok.output
    assert "data check passed" in ok.output and "train label balance" in ok.output
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    res = runner.invoke(app, ["data", "check", str(config), "--set", "base=tiny-llama", "--set", f"data.train={bad}"])
    assert res.exit_code != 0
    assert "line 1: the last message must be an assistant turn" in str(res.exception) + res.output


# --- the method registry and the trainer options (issue 18: one module per method; issue 19) ---

FAST = ["base=tiny-llama", "batch_size=2", "cpus_per_worker=1", "checkpoint_every_steps=100", "bf16_autocast=false"]


def _eval_file(tmp_path, n=6) -> Path:
    rows = (EXAMPLES / "support-intents" / "eval.jsonl").read_text().splitlines()[:n]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _lora_tensors(model, adapter: str = "default") -> dict:
    return {k.replace(f".{adapter}.", "."): v.detach().float().clone() for k, v in model.named_parameters()
            if "lora_" in k and f".{adapter}." in k}


def test_methods_are_looked_up_by_name_and_the_error_lists_them():
    import pytest

    from lorafleet.training.errors import TrainConfigError
    from lorafleet.training.methods import get_method, method_names

    assert method_names() == ["dpo", "sft"]
    assert get_method("dpo").supports_packing is False and get_method("sft").supports_packing is True
    with pytest.raises(TrainConfigError, match=r"method='ppo'.*available: dpo, sft"):
        get_method("ppo")
    worker = (Path(__file__).resolve().parents[2] / "lorafleet" / "training" / "worker.py").read_text()
    assert '"dpo"' not in worker and '"sft"' not in worker  # the worker holds no method-specific branch


def test_trainer_options_are_validated_naming_the_field():
    import pytest

    from lorafleet.training.errors import TrainConfigError

    sft, dpo = EXAMPLES / "support-intents" / "train.yaml", EXAMPLES / "dpo-support" / "train.yaml"
    for config, sets, needle in [
        (dpo, ["packing=true", "init_from=null"], "packing=true: method 'dpo' does not pack rows"),
        (dpo, ["group_by_length=true", "init_from=null"], "group_by_length=true: method 'dpo' does not group"),
        (sft, ["group_by_length=true", "packing=true"], "group_by_length=true with packing=true"),
        (dpo, ["padding_free=true", "init_from=null"], "padding_free=true: method 'dpo' does not flatten rows"),
        (sft, ["early_stopping_patience=2"], "early_stopping_patience=2: needs eval_every_steps"),
        (sft, ["early_stopping_patience=2", "eval_every_steps=3", "checkpoint_every_steps=10"],
         "checkpoint_every_steps=10: with early stopping it must be a multiple of eval_every_steps=3"),
        (sft, ["eval_every_steps=5", "data.eval=null"], "eval_every_steps=5: needs held-out rows"),
        (sft, ["init_from=support-intents@0"], "init_from: Value error, init_from='support-intents@0'"),
        (sft, ["init_from=support-intents"], "init_from='support-intents': not a version reference"),
        (sft, ["eval.engine_url=localhost:8000"], "'localhost:8000': give the engine's http(s)://host:port"),
    ]:
        with pytest.raises(TrainConfigError, match=re.escape(needle)):
            load_train_config(config, sets)
    assert load_train_config(sft, ["init_from=support-intents@3"]).init_from == "support-intents@3"
    assert load_train_config(sft, ["eval.engine_url=http://10.0.0.7:8001/v1/"]).eval.engine_url == "http://10.0.0.7:8001"


def test_packing_packs_rows_without_attention_across_them(settings, tiny_base, tmp_path):
    import torch

    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            [*FAST, "max_steps=2", "packing=true", "data.eval=null", "max_seq_length=128"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    ds = trainer.train_dataset
    n_rows = sum(len(s) for s in ds["seq_lengths"])
    assert n_rows == len((EXAMPLES / "support-intents" / "train.jsonl").read_text().splitlines())
    assert len(ds) < n_rows / 2  # several rows per 128-token block
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free: one flat row
    # a packed forward equals each row alone: sdpa keeps the rows apart through position_ids
    model = trainer.model.eval()
    pos = batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for a, b in list(itertools.pairwise(starts))[:2]:
            alone = model(input_ids=batch["input_ids"][:, a:b]).logits[0]
            assert torch.allclose(packed[a:b], alone, atol=1e-4)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_length_grouped_batches_cover_every_row_once_in_random_batch_order():
    import random
    import statistics

    from lorafleet.training.methods.sft import LengthGroupedBatches

    rng = random.Random(0)
    lengths = [rng.randrange(20, 90) for _ in range(1003)]
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=42)
    order = list(sampler)
    assert sorted(order) == list(range(1003))  # every row once, none twice
    batches = [order[i:i + 8] for i in range(0, 1003, 8)]
    assert len(batches[-1]) == 3 and all(len(b) == 8 for b in batches[:-1])  # the remainder goes last
    spread = statistics.mean(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1])
    assert spread < 5  # a random batch of 8 spans ~55 tokens here
    first_half = statistics.mean(lengths[i] for b in batches[:62] for i in b)
    second_half = statistics.mean(lengths[i] for b in batches[62:-1] for i in b)
    assert abs(first_half - second_half) < 6  # no long-to-short curriculum over the epoch
    assert list(LengthGroupedBatches(lengths, 8, 42)) == order  # a resumed run replays the order
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_group_by_length_trains_on_batches_with_less_padding(settings, tiny_base, tmp_path):
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            [*FAST, "max_steps=2", "group_by_length=true", "data.eval=null", "batch_size=8",
                             "padding_free=false"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    batches = list(itertools.islice(trainer.get_train_dataloader(), 40))
    padded = sum(int(b["input_ids"].numel()) for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    assert real / padded > 0.95  # random batches of this data are ~22% padding
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_padding_free_steps_see_the_same_rows_and_loss_without_padding(settings, tiny_base, tmp_path):
    import torch

    def first_batch(sets: list[str]):
        cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                                [*FAST, "max_steps=1", "batch_size=8", "max_seq_length=60", *sets])
        trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
        return trainer, next(iter(trainer.get_train_dataloader()))

    padded_trainer, padded = first_batch(["padding_free=false"])
    trainer, flat = first_batch(["padding_free=true"])
    assert "attention_mask" not in flat and flat["input_ids"].shape[0] == 1  # one flat row, no padding
    pos = flat["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
    rows = [flat["input_ids"][0, a:b].tolist() for a, b in itertools.pairwise(starts)]
    assert rows == [ids[m.bool()].tolist() for ids, m in zip(padded["input_ids"], padded["attention_mask"])]
    assert max(len(r) for r in rows) == 60  # max_seq_length still cuts the long rows
    assert flat["input_ids"].numel() < padded["input_ids"].numel()
    trainer.model.load_state_dict(padded_trainer.model.state_dict())  # the same weights in both
    trainer.model.eval()
    padded_trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, flat)
        padded_loss = padded_trainer.compute_loss(padded_trainer.model, padded)
    assert torch.allclose(loss, padded_loss, atol=1e-4), (loss, padded_loss)
    assert trainer.train().global_step == 1


def test_the_cpu_loss_scores_only_the_completion_and_equals_scoring_every_token(settings, tiny_base, tmp_path):
    import torch
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            [*FAST, "max_steps=1", "data.eval=null", "batch_size=4"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    assert trl_utils._use_triton(torch.device("cpu")) is True  # the hook TRL's fused LM head asks
    assert kernels._use_triton(torch.device("cpu")) is False  # the kernels themselves stay on the CPU path
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).float().mean() > 0.4  # the prompt tokens carry no label
    trainer.model.eval()  # no LoRA dropout: the two forwards see the same weights
    compact = trainer.compute_loss(trainer.model, batch)
    patched, trl_utils._use_triton = trl_utils._use_triton, kernels._use_triton  # TRL's own CPU choice
    try:
        every_token = trainer.compute_loss(trainer.model, batch)
    finally:
        trl_utils._use_triton = patched
    assert torch.allclose(compact, every_token, atol=1e-5), (compact, every_token)


def test_eval_loss_curve_and_early_stopping_load_the_best_checkpoint(settings, tiny_base, tmp_path):
    from safetensors.torch import load_file

    from lorafleet.training.worker import loss_curve

    # an improvement must exceed 100 nats: none does, so the run stops after patience=1 evaluation
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            [*FAST, "max_steps=8", f"data.eval={_eval_file(tmp_path)}", "eval_every_steps=1",
                             "checkpoint_every_steps=1", "early_stopping_patience=1",
                             "early_stopping_threshold=100", "logging_steps=1", "learning_rate=0.01"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    result = trainer.train()
    assert result.global_step == 2 < cfg.max_steps
    curve = loss_curve(trainer.state.log_history)
    assert [s for s, _ in curve["eval"]] == [1, 2] and [s for s, _ in curve["train"]] == [1, 2]
    best = Path(trainer.state.best_model_checkpoint)
    best_loss = min(v for _, v in curve["eval"])
    assert best.name == f"checkpoint-{next(s for s, v in curve['eval'] if v == best_loss)}"
    saved = load_file(best / "adapter_model.safetensors")
    now = _lora_tensors(trainer.model)
    assert saved and all(torch_equal(now[_peft_key(k, now)], v) for k, v in saved.items())
    assert abs(trainer.evaluate()["eval_loss"] - best_loss) < 1e-4  # the model in memory is the best one


def torch_equal(a, b) -> bool:
    import torch

    return torch.allclose(a.float(), b.float(), atol=1e-6)


def _peft_key(saved_key: str, names: dict) -> str:
    """adapter_model.safetensors names a parameter without its adapter name, as _lora_tensors does."""
    assert saved_key in names, (saved_key, sorted(names)[:3])
    return saved_key


def test_continued_training_starts_from_the_parent_weights(settings, tiny_base, tmp_path):
    from safetensors.torch import load_file

    base_dir = settings.layout.base("tiny-llama")
    parent = make_random_lora(base_dir, tmp_path / "parent", r=8, scale=0.5, seed=3)
    parent_w = load_file(parent / "adapter_model.safetensors")
    sets = [*FAST, "max_steps=1", "warmup_ratio=0", "data.eval=null", "peft.r=8", "peft.alpha=16"]
    # SFT: the trainable adapter is the parent's
    sft_cfg = job_payload(load_train_config(EXAMPLES / "support-intents" / "train.yaml", sets), base_dir)
    sft = build_trainer(dict(sft_cfg, init_from_dir=str(parent)), str(tmp_path / "sft"), [])
    w = _lora_tensors(sft.model)
    assert len(w) == len(parent_w) and all(torch_equal(w[_peft_key(k, w)], v) for k, v in parent_w.items())
    assert all(p.requires_grad for k, p in sft.model.named_parameters() if "lora_" in k)
    # DPO: the policy starts as the parent and the frozen reference is a copy of it
    dpo_cfg = job_payload(load_train_config(EXAMPLES / "dpo-support" / "train.yaml", [*sets, "init_from=null"]), base_dir)
    dpo = build_trainer(dict(dpo_cfg, init_from_dir=str(parent)), str(tmp_path / "dpo"), [])
    ref = _lora_tensors(dpo.model, "ref")
    assert all(torch_equal(ref[_peft_key(k, ref)], v) for k, v in parent_w.items())
    dpo.train()
    after, ref_after = _lora_tensors(dpo.model), _lora_tensors(dpo.model, "ref")
    assert all(torch_equal(ref_after[k], ref[k]) for k in ref)  # the reference does not move
    assert any(not torch_equal(after[k], ref[k]) for k in ref)  # the policy does
    dpo.model.save_pretrained(tmp_path / "out", selected_adapters=["default"])
    assert not (tmp_path / "out" / "ref").exists()


def test_init_from_must_match_the_base_and_lora_shape(settings, tiny_base, tmp_path):
    import pytest

    from lorafleet.registry import open_registry
    from lorafleet.training.errors import TrainConfigError
    from lorafleet.training.lineage import build_lineage, resolve_parent

    reg = open_registry(settings)
    config = EXAMPLES / "support-intents" / "train.yaml"
    modules = tuple(load_train_config(config, []).peft.target_modules)  # the parent has the example's shape
    adapter = make_random_lora(settings.layout.base("tiny-llama"), tmp_path / "a", r=8, target_modules=modules)
    ref = reg.push(adapter, "parent-shape", tiny_base).ref
    ok = load_train_config(config, ["base=tiny-llama", f"init_from={ref}", "peft.r=8", "peft.alpha=16"])
    parent = resolve_parent(ok, settings, tiny_base)
    assert parent.ref == ref and "adapter_model.safetensors" in parent.files
    assert build_lineage(ok, tiny_base, {}, {}, {}, {}, {}, "run")["parent"] == ref
    for sets, needle in [
        (["peft.r=16", "peft.alpha=16"], f"peft.r=16: init_from='{ref}' has 8"),
        (["peft.r=8", "peft.alpha=32"], f"peft.alpha=32: init_from='{ref}' has 16"),
        (["peft.r=8", "peft.alpha=16", "peft.target_modules=[q_proj]"], "peft.target_modules=['q_proj']"),
        (["peft.r=8", "peft.alpha=16", "init_from=parent-shape@7"], "init_from='parent-shape@7': parent-shape@7 not found"),
    ]:
        cfg = load_train_config(config, ["base=tiny-llama", f"init_from={ref}", *sets])
        with pytest.raises(TrainConfigError, match=re.escape(needle)):
            resolve_parent(cfg, settings, tiny_base)
    other = tiny_base.model_copy(deep=True)
    other.identity.weights_sha256 = "0" * 64
    with pytest.raises(TrainConfigError, match=r"base='tiny-llama': init_from='parent-shape@1' was trained on"):
        resolve_parent(ok, settings, other)


def test_registry_show_prints_the_parent_chain(settings, tiny_base, tmp_path):
    from lorafleet.platform.cli import app
    from lorafleet.registry import open_registry
    from lorafleet.registry.manifest import AdapterManifest, parent_chain

    reg = open_registry(settings)
    adapter = make_random_lora(settings.layout.base("tiny-llama"), tmp_path / "a", r=8)
    first = reg.push(adapter, "chain-sft", tiny_base)
    second = reg.push(adapter, "chain-sft", tiny_base, parent=1)  # a bare number: same name
    third = reg.push(adapter, "chain-dpo", tiny_base, parent=second.ref)
    assert second.parent == "chain-sft@1" and third.parent == "chain-sft@2"
    assert parent_chain(third, reg.resolve) == ["chain-sft@2", "chain-sft@1"]
    assert parent_chain(first, reg.resolve) == []
    gone = AdapterManifest.model_validate({**third.model_dump(), "parent": "chain-sft@9"})
    assert parent_chain(gone, lambda r: None) == ["chain-sft@9 (missing)"]
    res = CliRunner().invoke(app, ["registry", "show", third.ref])
    assert res.exit_code == 0, res.output
    assert "lineage   chain-dpo@1 <- chain-sft@2 <- chain-sft@1" in res.output
    assert "lineage" not in CliRunner().invoke(app, ["registry", "show", first.ref]).output


def test_export_merged_writes_a_folder_that_answers_like_the_adapter(settings, tiny_base, tmp_path):
    import json
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from lorafleet.platform.cli import app
    from lorafleet.registry import open_registry
    from lorafleet.training.export import EXPORT_RECORD

    base_dir = settings.layout.base("tiny-llama")
    adapter = make_random_lora(base_dir, tmp_path / "a", r=8, scale=30.0, seed=1)
    ref = open_registry(settings).push(adapter, "export-me", tiny_base).ref
    dest = tmp_path / "merged"
    res = CliRunner().invoke(app, ["export", ref, "--merged", str(dest), "--max-new-tokens", "12"])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    assert "greedy agreement: 4/4 prompts identical" in res.output and f"-> {dest}" in res.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (dest / name).is_file(), name
    assert "chat_template" in (dest / "tokenizer_config.json").read_text() or (dest / "chat_template.jinja").is_file()
    assert json.loads((dest / EXPORT_RECORD).read_text())["greedy_agreement"]["agreeing"] == 4
    merged, base = load_file(dest / "model.safetensors"), load_file(base_dir / "model.safetensors")
    assert not any("lora" in k for k in merged) and merged.keys() == base.keys()
    assert merged["model.layers.0.self_attn.q_proj.weight"].dtype == base["model.layers.0.self_attn.q_proj.weight"].dtype
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    # bad input: one line on stderr, exit 2 (a non-empty folder, an unknown version)
    env = dict(os.environ)
    for args, needle in [([ref, "--merged", str(dest)], "exists and is not an empty folder"),
                         (["export-me@9", "--merged", str(tmp_path / "new")], "export-me@9 not found")]:
        cli = [sys.executable, "-c", "from lorafleet.platform.cli import main; main()", "export"]
        out = subprocess.run([*cli, *args], check=False, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "new").exists()


def test_neftune_noise_reaches_the_trainer_and_is_validated(tmp_path):
    """``neftune_noise_alpha`` is transformers' own argument (measured on the example: not shipped)."""
    import pytest
    from trl import SFTConfig  # transformers' training arguments plus TRL's (max_length)

    from lorafleet.training.errors import TrainConfigError
    from lorafleet.training.worker import _trainer_args

    sft = EXAMPLES / "support-intents" / "train.yaml"
    cfg = load_train_config(sft, ["neftune_noise_alpha=5"])
    args = SFTConfig(**_trainer_args(job_payload(cfg, tmp_path), str(tmp_path / "hf")))
    assert args.neftune_noise_alpha == 5.0
    assert SFTConfig(**_trainer_args(job_payload(load_train_config(sft), tmp_path),
                                     str(tmp_path / "hf"))).neftune_noise_alpha is None
    with pytest.raises(TrainConfigError, match="neftune_noise_alpha"):
        load_train_config(sft, ["neftune_noise_alpha=0"])


def test_bf16_autocast_auto_follows_the_devices_native_bf16(tmp_path):
    """``auto`` (the default and the example's setting) turns bf16 on only where the worker's device has
    native bf16 kernels; true and false are obeyed; anything else is refused naming the field."""
    import pytest
    import torch
    from trl import SFTConfig

    from lorafleet.training.errors import TrainConfigError
    from lorafleet.training.precision import bf16_is_fast
    from lorafleet.training.worker import _trainer_args

    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert bf16_is_fast(use_gpu=False) is native
    sft = EXAMPLES / "support-intents" / "train.yaml"
    for setting, want in (("auto", native), ("true", True), ("false", False)):
        cfg = load_train_config(sft, [f"bf16_autocast={setting}"])
        assert cfg.bf16_autocast == ("auto" if setting == "auto" else setting == "true")
        assert SFTConfig(**_trainer_args(job_payload(cfg, tmp_path), str(tmp_path / "hf"))).bf16 is want, setting
    assert load_train_config(sft).bf16_autocast == "auto"
    with pytest.raises(TrainConfigError, match="bf16_autocast"):
        load_train_config(sft, ["bf16_autocast=sometimes"])


def test_eval_max_rows_bounds_the_held_out_loss_too(settings, tiny_base, tmp_path):
    """eval.max_rows (the quickstart's first 50 rows of each set) also bounds the rows of the trainer's held-out loss."""
    from lorafleet.training.worker import build_datasets

    base = [*FAST, "max_steps=1", f"data.eval={_eval_file(tmp_path, n=6)}"]
    for extra, rows in (([], 6), (["eval.max_rows=4"], 4), (["eval.max_rows=50"], 6)):
        cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml", [*base, *extra])
        train, held_out = build_datasets(job_payload(cfg, settings.layout.base("tiny-llama")))
        assert len(held_out) == rows and len(train) == 2460, extra


def test_under_bf16_the_frozen_linear_weights_are_stored_in_bf16(settings, tiny_base, tmp_path):
    """Autocast multiplies them in bf16 anyway; stored so, they skip a cast per use. Embeddings,
    norms and the trained LoRA weights stay fp32; without bf16 everything stays fp32."""
    import torch

    from lorafleet.training.worker import load_model

    base = str(settings.layout.base("tiny-llama"))
    model = load_model(base, "none", use_gpu=False, bf16=True)
    linear = [m for m in model.model.layers.modules() if type(m) is torch.nn.Linear]
    assert linear and all(m.weight.dtype == torch.bfloat16 for m in linear)
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert model.model.norm.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in load_model(base, "none", use_gpu=False, bf16=False).parameters())
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            [*FAST, "max_steps=1", "data.eval=null", "bf16_autocast=true"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    trained = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert trainer.train().training_loss > 0


def test_per_row_attention_equals_sdpa_over_the_flat_sequence_with_its_block_mask():
    """Padding-free rows on the CPU: attention cut at TRL's row boundaries gives sdpa's output and
    gradients (GQA heads, bf16 inputs as under autocast); a call without boundaries is sdpa's own."""
    import torch
    import torch.nn.functional as F

    from lorafleet.training.attention import per_row_attention

    torch.manual_seed(0)
    lengths = [7, 30, 1, 52, 18]
    total, heads, kv_heads, dim = sum(lengths), 9, 3, 64
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    row = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pos = torch.cat([torch.arange(n) for n in lengths])
    block_mask = (row[:, None] == row[None, :]) & (pos[:, None] >= pos[None, :])
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, heads // kv_heads
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        q, k, v = (torch.randn(1, h, total, dim, dtype=dtype, requires_grad=True) for h in (heads, kv_heads, kv_heads))
        grad_out = torch.randn(1, total, heads, dim, dtype=dtype)
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=block_mask, scale=0.125,
                                             enable_gqa=True).transpose(1, 2)
        ref_grads = torch.autograd.grad(ref, (q, k, v), grad_out.float())
        out, weights = per_row_attention(module, q, k, v, None, scaling=0.125, cu_seq_lens_q=cu)
        assert weights is None and out.shape == (1, total, heads, dim) and out.dtype == dtype
        assert torch.allclose(out.float(), ref, atol=tol), (out.float() - ref).abs().max()
        for got, want in zip(torch.autograd.grad(out, (q, k, v), grad_out), ref_grads):
            assert torch.allclose(got.float(), want.float(), atol=tol * 4), (got.float() - want.float()).abs().max()
    q, k, v = (torch.randn(2, h, 11, dim) for h in (heads, kv_heads, kv_heads))  # padded batch: sdpa, causal
    out, _ = per_row_attention(module, q, k, v, None)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    assert torch.allclose(out, want, atol=1e-6)


def test_padding_free_training_on_the_cpu_uses_per_row_attention(settings, tiny_base, tmp_path):
    from lorafleet.training.attention import NAME

    def attention(sets: list[str]) -> str:
        cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                                [*FAST, "max_steps=1", "data.eval=null", *sets])
        trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
        return trainer.model.config._attn_implementation

    assert attention(["padding_free=true"]) == NAME
    assert attention(["padding_free=false"]) == "sdpa"


def test_loraplus_trains_the_b_matrices_at_ratio_times_the_learning_rate(settings, tiny_base, tmp_path):
    """``loraplus_lr_ratio``: every LoRA B matrix in a group at ratio x learning_rate, every A matrix at
    learning_rate, nothing trainable left out; the schedule scales both; a ratio under 1 is refused."""
    import pytest

    from lorafleet.training.errors import TrainConfigError

    sft = EXAMPLES / "support-intents" / "train.yaml"
    cfg = load_train_config(sft, ["base=tiny-llama", "max_steps=2", "data.eval=null", "batch_size=2",
                                  "checkpoint_every_steps=100", "cpus_per_worker=1", "peft.r=8",
                                  "learning_rate=0.001", "loraplus_lr_ratio=16"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    names = {id(p): n for n, p in trainer.model.named_parameters() if p.requires_grad}
    groups = {g["lr"]: [names[id(p)] for p in g["params"]] for g in trainer.optimizer.param_groups if g["params"]}
    assert sorted(groups) == [0.001, 0.016]
    assert groups[0.016] and all("lora_B" in n for n in groups[0.016])
    assert groups[0.001] and all("lora_A" in n for n in groups[0.001])
    assert sorted(groups[0.001] + groups[0.016]) == sorted(names.values())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
    assert trainer.lr_scheduler.optimizer is trainer.optimizer  # the schedule runs on the LoRA+ groups
    assert {0.001, 0.016} <= set(trainer.lr_scheduler.base_lrs)
    after = dict(trainer.model.named_parameters())
    assert all(not torch_equal(before[n], after[n]) for n in before)  # B starts at zero and moved
    with pytest.raises(TrainConfigError, match="loraplus_lr_ratio"):
        load_train_config(sft, ["loraplus_lr_ratio=0.5"])
