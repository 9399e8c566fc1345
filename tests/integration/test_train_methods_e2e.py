"""Every training method end to end on the tiny base: SFT and DPO, each with LoRA and with QLoRA
(NF4), trained on a real local Ray Train runtime by the pipeline `platform train` runs, pushed to
the registry, loaded from the registry by the real vLLM engine (the session's) and evaluated.
Continued training rides along: the DPO LoRA run starts from the SFT LoRA version (init_from).

One Ray runtime for the module, two steps per job, no engine start of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from lorafleet.training.config import load_train_config

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMMON = ["base=tiny-llama", "max_steps=2", "batch_size=2", "cpus_per_worker=1", "bf16_autocast=false",
          "checkpoint_every_steps=2", "logging_steps=1", "data.golden=null", "eval.max_rows=4",
          "eval.max_new_tokens=8", "fingerprint.embedding_centroid=false"]


@pytest.fixture(scope="module")
def ray_runtime():
    from lorafleet.training.job import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """The examples' first rows (SFT chat rows, DPO preference pairs): checks and steps stay cheap."""
    out = tmp_path_factory.mktemp("data")
    files = {}
    for key, src, n in [("sft_train", "support-intents/train.jsonl", 48), ("sft_eval", "support-intents/eval.jsonl", 6),
                        ("dpo_train", "dpo-support/train.jsonl", 24), ("dpo_eval", "dpo-support/eval.jsonl", 6)]:
        files[key] = out / f"{key}.jsonl"
        files[key].write_text("\n".join((EXAMPLES / src).read_text().splitlines()[:n]) + "\n")
    return files


def _train(settings, config: Path, sets: list[str]):
    from lorafleet.training.pipeline import run_pipeline

    cfg = load_train_config(config, [*COMMON, *sets])
    # evaluation on the session's engine below (one engine for all four adapters, not one each)
    return run_pipeline(cfg, settings, force=True, push=True, evaluate=False, show_progress=False, say=lambda m: None)


def _evaluate_on_engine(engine, settings, ref: str, cfg) -> dict:
    """Load the pushed version from the registry into the running vLLM engine and score it there."""
    from lorafleet.registry import open_registry
    from lorafleet.training.evaluate import evaluate_on_engine, load_eval_sets

    folder = open_registry(settings).materialize(ref)
    name = ref.replace("@", "-v")
    r = httpx.post(f"{engine.root_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(folder)},
                   timeout=120)
    assert r.status_code == 200, r.text
    try:
        return evaluate_on_engine(engine.url, name, cfg, load_eval_sets(cfg))
    finally:
        httpx.post(f"{engine.root_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def _lora_b(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(folder / "adapter_model.safetensors").items() if "lora_B" in k}


def test_sft_and_dpo_with_lora_and_qlora_train_push_serve_and_evaluate(settings, tiny_base, ray_runtime, engine,
                                                                      small_data):
    from lorafleet.registry import open_registry

    sft_yaml, dpo_yaml = EXAMPLES / "support-intents" / "train.yaml", EXAMPLES / "dpo-support" / "train.yaml"
    sft_data = [f"data.train={small_data['sft_train']}", f"data.eval={small_data['sft_eval']}"]
    dpo_data = [f"data.train={small_data['dpo_train']}", f"data.eval={small_data['dpo_eval']}"]
    runs = {
        # eval loss every step on Ray: the curve lands in the manifest
        "sft-lora": (sft_yaml, [*sft_data, "output_name=e2e-sft-lora", "eval_every_steps=1"]),
        "sft-qlora": (sft_yaml, [*sft_data, "output_name=e2e-sft-qlora", "quantization=nf4", "packing=true"]),
        "dpo-qlora": (dpo_yaml, [*dpo_data, "output_name=e2e-dpo-qlora", "quantization=nf4", "init_from=null"]),
    }
    results = {key: _train(settings, config, sets) for key, (config, sets) in runs.items()}
    # continued training: DPO from the SFT LoRA version (same base and LoRA shape as the example's SFT)
    parent = results["sft-lora"].ref
    results["dpo-lora"] = _train(settings, dpo_yaml, [*dpo_data, "output_name=e2e-dpo-lora", f"init_from={parent}"])

    reg = open_registry(settings)
    for key, res in results.items():
        method, quant = key.split("-")
        m = reg.verify(res.ref)
        assert (m.method, m.quantization) == (method, "nf4" if quant == "qlora" else "none"), key
        assert m.training_metrics["global_step"] == 2 and m.training_metrics["loss_curve"]["train"], key
        scores = _evaluate_on_engine(engine, settings, res.ref, res.config)["eval"]
        assert scores["rows"] == 4 and len(scores["samples"]) == 3, key  # the engine answered every row
        assert 0.0 <= scores["json_parse_rate"] <= 1.0 and "intent" in scores["field_match"], key

    sft = reg.resolve(results["sft-lora"].ref)
    assert [s for s, _ in sft.training_metrics["loss_curve"]["eval"]] == [1, 2]
    assert sft.training_metrics["eval_loss"] > 0 and sft.training_metrics["base_eval_loss"] > 0
    assert reg.resolve(results["sft-qlora"].ref).training_config["packing"] is True
    for key in ("dpo-lora", "dpo-qlora"):
        tm = reg.resolve(results[key].ref).training_metrics
        assert 0.0 <= tm["preference_win_rate"] <= 1.0 and 0.0 <= tm["reference_preference_win_rate"] <= 1.0, key

    # the DPO LoRA version records its parent and its weights started from the parent's
    child = reg.resolve(results["dpo-lora"].ref)
    assert child.parent == parent and reg.resolve(results["dpo-qlora"].ref).parent is None
    assert json.loads((results["dpo-lora"].adapter_dir.parent / "lineage.json").read_text())["parent"] == parent
    p_b, c_b, fresh_b = (_lora_b(reg.materialize(r)) for r in (parent, child.ref, results["dpo-qlora"].ref))
    assert p_b.keys() == c_b.keys()
    moved = sum(float((c_b[k] - p_b[k]).norm()) for k in p_b)
    size = sum(float(p_b[k].norm()) for k in p_b)
    # LoRA B starts at zero: a fresh run's B after two DPO steps is tiny; a continued one stays near its parent's
    assert 0 < moved < 0.5 * size, (moved, size)
    assert sum(float(v.norm()) for v in fresh_b.values()) < 0.5 * size
