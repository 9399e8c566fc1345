"""The trainer the Ray workers build, run in-process on the tiny base for a few steps:
QLoRA (4-bit NF4 base via bitsandbytes on the CPU) and DPO; and the CLI's `data check`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lorafleet.training.config import load_train_config
from lorafleet.training.job import job_payload
from lorafleet.training.worker import build_trainer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_qlora_nf4_trains_and_saves_a_lora_adapter(settings, tiny_base, tmp_path):
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml",
                            ["base=tiny-llama", "max_steps=2", "quantization=nf4", "data.eval=null", "batch_size=2",
                             "checkpoint_every_steps=100", "cpus_per_worker=1", "peft.r=8"])
    trainer = build_trainer(job_payload(cfg, settings.layout.base("tiny-llama")), str(tmp_path / "hf"), [])
    q_proj = trainer.model.get_base_model().model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
    trainer.model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_dpo_trains_on_preference_rows(settings, tiny_base, tmp_path):
    cfg = load_train_config(EXAMPLES / "dpo-support" / "train.yaml",
                            ["base=tiny-llama", "max_steps=2", "batch_size=2", "checkpoint_every_steps=100",
                             "data.eval=null", "cpus_per_worker=1"])
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
