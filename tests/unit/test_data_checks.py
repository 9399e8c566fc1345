"""Data checks before any compute: every bad-input case names the file/row or field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lorafleet.training.config import load_train_config
from lorafleet.training.data import check_data
from lorafleet.training.dedup import NearDuplicateIndex, normalize_text
from lorafleet.training.errors import DataCheckError, TrainConfigError
from lorafleet.training.preflight import load_tokenizer, preflight
from lorafleet.training.rows import chat_row_problem, dpo_row_problem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SYSTEM = {"role": "system", "content": "Extract the support request as JSON."}


def chat(user: str, answer: str = '{"intent":"track_order"}') -> dict:
    return {"messages": [SYSTEM, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


TRAIN = [chat(t) for t in ("where is my order A12345", "please cancel order B22222 now",
                           "I forgot my password again", "talk to a human please", "my card expired today")]
EVAL = [chat("I want to return the lamp from C33333")]


def lines(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def make(tmp_path: Path, train=TRAIN, eval_=EVAL, golden=None, base="tiny-llama", **extra) -> Path:
    (tmp_path / "train.jsonl").write_text(lines(train))
    (tmp_path / "eval.jsonl").write_text(lines(eval_))
    data = {"train": "train.jsonl", "eval": "eval.jsonl"}
    if golden is not None:
        (tmp_path / "golden.jsonl").write_text(lines(golden))
        data["golden"] = "golden.jsonl"
    cfg = {"base": base, "output_name": "demo", "data": data, "max_seq_length": 128, **extra}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tok(tiny_base, settings):
    return load_tokenizer(settings.layout.base(tiny_base.name))


def run(path: Path, tok, overrides=()):
    return check_data(load_train_config(path, list(overrides)), tok)


def test_clean_data_passes_and_reports_lengths(tmp_path, tok):
    report = run(make(tmp_path), tok)
    assert report.ok, report.errors
    train = report.splits[0]
    assert train.rows == 5 and 10 < train.token_p50 <= train.token_p95 < 128
    assert train.truncated_ratio == 0


def test_malformed_jsonl_line_is_named(tmp_path, tok):
    path = make(tmp_path, train=[*TRAIN[:2], '{"messages": [', *TRAIN[2:]])
    with pytest.raises(DataCheckError, match=r"data\.train: .*train\.jsonl: line 3: malformed JSON"):
        run(path, tok)


def test_empty_dataset(tmp_path, tok):
    path = make(tmp_path, train=[])
    with pytest.raises(DataCheckError, match=r"data\.train: .*empty dataset"):
        run(path, tok)


def test_wrong_role_names_row_and_field(tmp_path, tok):
    bad = {"messages": [SYSTEM, {"role": "customer", "content": "hi"}, {"role": "assistant", "content": "{}"}]}
    report = run(make(tmp_path, train=[*TRAIN, bad]), tok)
    assert not report.ok
    assert "line 6" in report.errors[0] and "messages[1].role='customer'" in report.errors[0]
    with pytest.raises(DataCheckError, match="line 6"):
        report.raise_on_errors()


def test_missing_roles_and_order(tmp_path, tok):
    no_assistant = {"messages": [SYSTEM, {"role": "user", "content": "hello there"}]}
    swapped = {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}
    empty_answer = chat("where is D44444", answer="  ")
    no_messages = {"text": "hello"}
    report = run(make(tmp_path, train=[no_assistant, *TRAIN, swapped, empty_answer, no_messages]), tok)
    err = report.errors[0]
    assert "4 invalid row(s) at lines 1, 7, 8, 9" in err
    assert "line 1: the last message must be an assistant turn" in err
    assert "line 7: messages[0].role='assistant': expected 'user'" in err
    assert "line 8: the final assistant turn is empty" in err
    assert "line 9: missing key 'messages'" in err


def test_eval_rows_leaking_from_train_are_named(tmp_path, tok):
    exact = chat("Where is my order A12345?")  # same text after normalisation
    near = chat("where is my order A123456")  # near duplicate
    fresh = chat("change the shipping address on Z99999")
    report = run(make(tmp_path, eval_=[fresh, exact, near]), tok)
    err = next(e for e in report.errors if "leak" in e)
    assert err.startswith("data.eval: 2 row(s) leak from train")
    assert "line 2 ~ train line 1 (exact)" in err and "line 3 ~ train line 1" in err
    assert report.splits[1].leaked_exact == 1


def test_golden_leakage_too(tmp_path, tok):
    report = run(make(tmp_path, golden=[chat("please cancel order B22222 now")]), tok)
    assert any(e.startswith("data.golden: 1 row(s) leak") for e in report.errors)


def test_duplicates_within_train(tmp_path, tok):
    dup = [*TRAIN, chat("where is my order A12345"), chat("Please cancel order B22222 now!")]
    report = run(make(tmp_path, train=dup), tok)
    assert report.splits[0].exact_duplicates == 2
    assert any("duplicate row(s)" in e and "lines 6, 7" in e for e in report.errors)  # 2/7 > 5%
    relaxed = run(make(tmp_path, train=dup), tok, ["checks.max_duplicate_ratio=0.5"])
    assert relaxed.ok and any("duplicate" in w for w in relaxed.warnings)


def test_token_lengths_over_max_fail(tmp_path, tok):
    long = chat("word " * 300)
    report = run(make(tmp_path, train=[*TRAIN, long]), tok)
    assert any("exceed max_seq_length=128" in e and "lines 6" in e for e in report.errors)
    assert report.splits[0].token_max > 128


def test_label_balance(tmp_path, tok):
    rows = [chat("where is my order A12345"), chat("cancel B22222 please", '{"intent":"cancel_order"}'),
            chat("I forgot my password again", '{"intent":"reset_password"}'),
            chat("the lamp is broken", '{"error":"missing_order_id"}')]
    report = run(make(tmp_path, train=rows), tok, ["checks.label_field=intent", "checks.min_label_share=0.3"])
    assert report.labels == {"track_order": 1, "cancel_order": 1, "reset_password": 1, "(none)": 1}
    assert any("checks.label_field='intent'" in e for e in report.errors)


def test_missing_base_is_named(tmp_path, settings, tiny_base):
    cfg = load_train_config(make(tmp_path, base="no-such-base"))
    with pytest.raises(TrainConfigError, match=r"base='no-such-base'.*not found.*tiny-llama"):
        preflight(cfg, settings)


def test_target_module_the_base_lacks(tmp_path, settings, tiny_base):
    cfg = load_train_config(make(tmp_path), ["peft.target_modules=[q_proj, c_attn]"])
    with pytest.raises(TrainConfigError, match=r"peft\.target_modules=\['c_attn'\].*it has: .*q_proj"):
        preflight(cfg, settings)


def test_dpo_row_shapes():
    good = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": "b"}
    assert dpo_row_problem(good) is None
    assert "missing key 'rejected'" in dpo_row_problem({"prompt": "x", "chosen": "y"})
    assert "identical" in dpo_row_problem({"prompt": "x", "chosen": "y", "rejected": "y"})
    assert "must end with a user turn" in dpo_row_problem(
        {"prompt": [{"role": "assistant", "content": "x"}], "chosen": "y", "rejected": "z"})
    assert chat_row_problem(chat("ok")) is None


def test_near_duplicate_index():
    idx = NearDuplicateIndex(0.85)
    idx.add(normalize_text("where is my order A12345"), 1)
    assert idx.match(normalize_text("Where is my order A12345?")) == (1, "exact")
    assert idx.match(normalize_text("where is my order A123456")) == (1, "near")
    assert idx.match(normalize_text("I forgot my password")) is None


def test_example_dataset_is_clean_and_big_enough(tok):
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml", ["base=tiny-llama"])
    report = check_data(cfg, tok)
    assert report.ok, report.errors
    rows = {s.name: s.rows for s in report.splits}
    assert rows["train"] >= 600 and rows["eval"] >= 100 and rows["golden"] >= 50
    assert all(s.leaked_exact == s.leaked_near == 0 for s in report.splits)
    assert report.splits[0].exact_duplicates == report.splits[0].near_duplicates == 0


def test_dpo_example_is_clean(tok):
    cfg = load_train_config(EXAMPLES / "dpo-support" / "train.yaml", ["base=tiny-llama"])
    report = check_data(cfg, tok)
    assert report.ok, report.errors


def _templated(n: int = 240) -> list[dict]:
    """Rows a three-template-per-intent generator makes (ids and items vary, the phrasing does not)."""
    templates = {"track_order": ["where is my order {o}", "can you track order {o} for me", "has {o} shipped yet"],
                 "cancel_order": ["please cancel order {o}", "I want to cancel {o} right now", "cancel the {i} in {o}"]}
    items = ["lamp", "kettle", "shoes", "jacket", "watch"]
    rows = []
    for k in range(n):
        intent = sorted(templates)[k % 2]
        oid = f"{'ABCDEFGH'[k % 8]}{10000 + 37 * k}"
        text = templates[intent][k // 2 % 3].format(o=oid, i=items[k % 5]) + ["", " thanks", "!!", " asap"][k // 6 % 4]
        rows.append(chat(text, json.dumps({"intent": intent, "order_id": oid}, separators=(",", ":"))))
    return rows


def test_template_made_train_warns_and_the_threshold_is_honoured(tmp_path, tok):
    checks = {"label_field": "intent", "error_field": "error", "max_duplicate_ratio": 1.0}
    report = run(make(tmp_path, train=_templated(), checks=checks), tok)
    assert report.ok, report.errors  # a warning, not an error
    assert report.diversity is not None and report.diversity.template_share > 0.3
    assert any("TEMPLATE-MADE" in w for w in report.warnings)
    assert {d.label for d in report.diversity.labels} == {"track_order", "cancel_order"}
    relaxed = run(make(tmp_path, train=_templated(), checks={**checks, "max_template_share": 1.0,
                                                               "min_distinct_ngram_ratio": 0.0}), tok)
    assert not any("template-made" in w.lower() for w in relaxed.warnings)


def test_example_dataset_has_diverse_phrasings_and_hard_negatives_for_every_intent(tok):
    cfg = load_train_config(EXAMPLES / "support-intents" / "train.yaml", ["base=tiny-llama"])
    report = check_data(cfg, tok)
    d = report.diversity
    assert d is not None
    assert not any("template-made" in w.lower() for w in report.warnings), report.warnings
    assert report.splits[0].rows >= 1500
    assert d.template_share < cfg.checks.max_template_share
    # a missing-id hard negative lands next to every order intent
    for intent in ("track_order", "cancel_order", "return_item", "refund_status", "change_address"):
        assert d.coverage[intent].get("missing_order_id", 0) >= 10, (intent, d.coverage[intent])
    assert set(d.error_values) == {"missing_order_id", "ambiguous", "rejected"}


def test_hard_set_is_not_near_any_train_row():
    index = NearDuplicateIndex()
    for i, line in enumerate((EXAMPLES / "support-intents" / "train.jsonl").read_text().splitlines()):
        index.add(normalize_text(json.loads(line)["messages"][-2]["content"]), i)
    hard = [json.loads(line) for line in (EXAMPLES / "support-intents" / "hard.jsonl").read_text().splitlines()]
    assert len(hard) >= 150
    near = [r["messages"][-2]["content"] for r in hard if index.match(normalize_text(r["messages"][-2]["content"]))]
    assert near == []


def test_example_answers_never_invent_an_order_id():
    needs_id = {"track_order", "cancel_order", "return_item", "refund_status", "change_address"}
    for name in ("train", "eval", "golden", "hard"):
        for line in (EXAMPLES / "support-intents" / f"{name}.jsonl").read_text().splitlines():
            msgs = json.loads(line)["messages"]
            user, ans = msgs[-2]["content"], json.loads(msgs[-1]["content"])
            if "order_id" in ans:
                assert ans["intent"] in needs_id and ans["order_id"].lower() in user.lower(), (name, user, ans)
            elif ans.get("intent") in needs_id:
                raise AssertionError(f"{name}: order intent without an id: {user!r} -> {ans}")


def test_example_files_are_what_the_generator_writes():
    import importlib
    import sys

    here = EXAMPLES / "support-intents"
    sys.path.insert(0, str(here))
    try:
        gen = importlib.import_module("make_dataset")
    finally:
        sys.path.remove(str(here))
    splits = gen.build(hard=gen.read_rows(here / "hard.jsonl"))  # deterministic: the committed files exactly
    for name in ("train", "eval", "golden"):
        assert splits[name] == gen.read_rows(here / f"{name}.jsonl"), f"{name}.jsonl: rerun make_dataset.py"
