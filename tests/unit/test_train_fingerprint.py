"""The training-distribution fingerprint written into the manifest (the registry's Fingerprint)."""

from __future__ import annotations

from pathlib import Path

from lorafleet.registry import Fingerprint
from lorafleet.training.config import load_train_config
from lorafleet.training.fingerprint import compute_fingerprint
from lorafleet.training.preflight import load_tokenizer

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"


def test_fingerprint_of_the_example(settings, tiny_base):
    cfg = load_train_config(CONFIG, ["base=tiny-llama"])
    fp = Fingerprint.model_validate(compute_fingerprint(cfg, load_tokenizer(settings.layout.base("tiny-llama"))))
    rows = sum(1 for line in cfg.data.train.read_text(encoding="utf-8").splitlines() if line.strip())
    assert fp.rows == rows >= 1500
    assert sum(fp.features["prompt_tokens"].counts) == rows == sum(fp.features["completion_tokens"].counts)
    assert 30 < fp.features["prompt_tokens"].mean < 60 and 5 < fp.features["completion_tokens"].mean < 25
    assert sum(fp.turns_per_example.counts) == rows and fp.turns_per_example.counts[2] >= 0.9 * rows  # system + user + assistant (a few rows have no system prompt)
    assert abs(sum(fp.labels.values()) - 1) < 1e-9 and fp.labels["cancel_order"] > 0.1
    assert set(fp.model_extra["dataset_sha256"]) == {"train", "eval", "golden"}
    # the gateway's drift check compares live traffic with these histograms
    assert fp.psi("prompt_tokens", [45] * 50) > 0.25
