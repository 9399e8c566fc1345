"""Training config: defaults, unknown keys, --set overrides, sweeps; scoring and the gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lorafleet.training.config import TrainConfig, load_train_config
from lorafleet.training.config import GateSettings
from lorafleet.training.errors import TrainConfigError, TrainingError
from lorafleet.training.gate import apply_gate
from lorafleet.training.scoring import cannot_become_json, parse_json, score_answers
from lorafleet.training.sweep import expand_sweep, plan_jobs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


MINIMAL = {"output_name": "demo", "data": {"train": "train.jsonl"}}


def test_defaults_follow_common_practice(tmp_path):
    cfg = load_train_config(write(tmp_path, MINIMAL))
    assert (cfg.peft.r, cfg.peft.alpha, cfg.peft.dropout) == (16, 32, 0.05)
    assert cfg.peft.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (cfg.learning_rate, cfg.scheduler, cfg.warmup_ratio) == (2e-4, "cosine", 0.03)
    assert cfg.method == "sft" and cfg.quantization == "none"
    assert cfg.data.train == (tmp_path / "train.jsonl").resolve()  # relative to the config file


def test_every_field_has_a_description():
    for model in (TrainConfig, GateSettings):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(TrainConfigError, match=r"learning_rte: Extra inputs"):
        load_train_config(write(tmp_path, {**MINIMAL, "learning_rte": 1e-3}))


def test_unknown_nested_key_is_named(tmp_path):
    with pytest.raises(TrainConfigError, match=r"peft\.rank"):
        load_train_config(write(tmp_path, {**MINIMAL, "peft": {"rank": 8}}))


def test_bad_value_names_field_and_value(tmp_path):
    with pytest.raises(TrainConfigError, match=r"quantization.*'int8'"):
        load_train_config(write(tmp_path, {**MINIMAL, "quantization": "int8"}))


def test_set_overrides_nested_and_typed(tmp_path):
    cfg = load_train_config(write(tmp_path, MINIMAL), ["peft.r=8", "learning_rate=1e-3", "quantization=nf4",
                                                       "peft.target_modules=[q_proj, v_proj]"])
    assert cfg.peft.r == 8 and cfg.learning_rate == 1e-3 and cfg.quantization == "nf4"
    assert cfg.peft.target_modules == ["q_proj", "v_proj"]


def test_set_unknown_key_and_malformed(tmp_path):
    path = write(tmp_path, MINIMAL)
    with pytest.raises(TrainConfigError, match="bogus"):
        load_train_config(path, ["bogus=1"])
    with pytest.raises(TrainConfigError, match="expected key=value"):
        load_train_config(path, ["learning_rate"])


def test_missing_config_file(tmp_path):
    with pytest.raises(TrainConfigError, match="no such config file"):
        load_train_config(tmp_path / "nope.yaml")


def test_errors_share_the_training_root():
    assert issubclass(TrainConfigError, TrainingError)


def test_sweep_expands_with_aliases_and_names(tmp_path):
    assert expand_sweep("lr=1e-4,2e-4") == [["learning_rate=1e-4"], ["learning_rate=2e-4"]]
    assert expand_sweep(None) == [[]]
    with pytest.raises(TrainConfigError, match="--sweep"):
        expand_sweep("lr")
    jobs = plan_jobs([write(tmp_path, MINIMAL)], [], "lr=1e-4,2e-4")
    assert [j.learning_rate for j in jobs] == [1e-4, 2e-4]
    assert len({j.output_name for j in jobs}) == 2


def test_example_config_validates():
    cfg = load_train_config(EXAMPLE)
    assert cfg.output_name == "support-intents" and cfg.eval.schema_path.is_file()


def test_scoring_rates():
    schema = {"type": "object", "properties": {"intent": {"enum": ["a", "b"]}}, "required": ["intent"],
              "additionalProperties": False}
    refs = ['{"intent":"a"}', '{"intent":"b"}', '{"intent":"a"}', '{"intent":"b"}']
    answers = ['{"intent":"a"}', '{"intent":"a"}', 'not json', '{"intent":"b","x":1}']
    s = score_answers(answers, refs, schema, ["intent"])
    assert s["json_parse_rate"] == 0.75
    assert s["schema_pass_rate"] == 0.5
    assert s["field_match"]["intent"] == 0.5
    assert s["pass_rate"] == 0.25


def test_an_answer_stops_only_when_no_continuation_can_parse():
    stops = ["Sure", "The support request", " \n Here", "D", "tx", "nul!", "Nope"]
    goes = ["", "  ", "{", '{"intent"', "[", '"', "-", "4", "`", "```json", "t", "tru", "true", "f", "n", "N", "I"]
    assert [t for t in stops if not cannot_become_json(t)] == []
    assert [t for t in goes if cannot_become_json(t)] == []
    # every text that parses has no prefix that stops: the early stop never changes a score
    for text in ['{"intent":"a"}', "  [1, 2]", '"x"', "-1.5", "true", "false", "NaN", "Infinity",
                 '```json\n{"a": 1}\n```']:
        assert parse_json(text) is not None
        assert not any(cannot_become_json(text[:i]) for i in range(len(text) + 1)), text


def test_gate_thresholds_and_golden_vs_base():
    gate = GateSettings(min_schema_pass_rate=0.9, min_field_match={"intent": 0.8})
    good = {"eval": {"schema_pass_rate": 0.95, "field_match": {"intent": 0.9}}, "golden": {"pass_rate": 0.7}}
    base = {"eval": {"schema_pass_rate": 0.1, "field_match": {"intent": 0.0}}, "golden": {"pass_rate": 0.1}}
    assert apply_gate(gate, good, base, None).passed
    worse = {**good, "golden": {"pass_rate": 0.05}}
    res = apply_gate(gate, worse, base, None)
    assert not res.passed and [c.name for c in res.failed] == ["golden.pass_rate"]
    low = {**good, "eval": {"schema_pass_rate": 0.5, "field_match": {"intent": 0.9}}}
    res = apply_gate(gate, low, base, None)
    assert "eval.schema_pass_rate=0.500" in res.summary()
