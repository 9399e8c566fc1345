"""The diversity report: template-made rows are found, varied rows are not, ids and slots are masked."""

from __future__ import annotations

import json
import random
from pathlib import Path

from lorafleet.training.config import DataCheckSettings
from lorafleet.training.diversity import ID, NO_INTENT, SLOT, diversity_report, mask_slots, skeleton

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-intents"
DEFAULTS = DataCheckSettings()


def report(rows):
    d = DEFAULTS
    return diversity_report(rows, "intent", "error", ngram=d.diversity_ngram,
                            template_ngram_min_rows=d.template_ngram_min_rows,
                            template_ngram_min_share=d.template_ngram_min_share,
                            max_template_share=d.max_template_share,
                            min_distinct_ngram_ratio=d.min_distinct_ngram_ratio,
                            min_label_rows=d.diversity_min_label_rows)


def template_rows(n: int = 600, seed: int = 3) -> list[tuple[str, dict]]:
    """What a few-template generator makes: 4 templates per intent, slots, greetings and sign-offs."""
    rng = random.Random(seed)
    templates = {
        "track_order": ["where is my order {oid}", "can you track order {oid} for me", "has {oid} shipped yet",
                        "is my {item} from order {oid} on its way"],
        "cancel_order": ["please cancel order {oid}", "I want to cancel {oid} right now",
                         "I no longer need the {item}, cancel order {oid}", "can I still cancel {oid} today"],
        "return_item": ["I want to return the {item} from order {oid}", "the {item} in {oid} is broken, I want to return it",
                        "start a return for order {oid} please", "I need a return label for {oid} today"],
    }
    items = ["lamp", "kettle", "shoes", "jacket", "watch", "monitor", "blender", "backpack"]
    pre, post = ["", "hi, ", "hello! ", "urgent: ", "excuse me, "], ["", " thanks.", "!!", " asap please."]
    rows = []
    for _ in range(n):
        intent = rng.choice(sorted(templates))
        oid = rng.choice("ABCDEFGHJK") + str(rng.randrange(10000, 99999))
        text = rng.choice(pre) + rng.choice(templates[intent]).format(oid=oid, item=rng.choice(items)) + rng.choice(post)
        rows.append((text, {"intent": intent, "order_id": oid}))
    return rows


def example_rows() -> list[tuple[str, dict]]:
    out = []
    for line in (EXAMPLE / "train.jsonl").read_text(encoding="utf-8").splitlines():
        msgs = json.loads(line)["messages"]
        out.append((msgs[-2]["content"], json.loads(msgs[-1]["content"])))
    return out


def test_skeleton_masks_ids_in_every_written_form():
    forms = ["where is K48213", "where is #K48213", "Where is k48213?", "where is #k48213!!"]
    assert {tuple(skeleton(f)) for f in forms} == {("where", "is", ID)}
    assert skeleton("order no. K48213, it's late") == ["order", "no", ID, "it's", "late"]


def test_slot_fillers_are_masked_from_the_data_itself():
    texts = [f"the {item} from my order is broken" for item in ("lamp", "kettle", "watch", "chair")]
    masked = mask_slots([skeleton(t) for t in texts])
    assert all(m == ["the", SLOT, "from", "my", "order", "is", "broken"] for m in masked)
    # three fillers are not a slot yet (min 4)
    assert mask_slots([skeleton(t) for t in texts[:3]])[0][1] == "lamp"


def test_template_made_data_warns():
    r = report(template_rows())
    assert r.template_share > DEFAULTS.max_template_share
    assert r.warnings and "TEMPLATE-MADE" in r.warnings[0]
    flagged = {w.split("'")[1] for w in r.warnings[1:]}
    assert flagged == {"track_order", "cancel_order", "return_item"}
    by_label = {d.label: d for d in r.labels}
    # items masked as slots: at most 4 templates x 5 greetings x 4 sign-offs skeletons per label (unmasked: 640)
    assert all(d.distinct_skeletons <= 80 for d in by_label.values())


def test_the_realistic_example_does_not_warn():
    r = report(example_rows())
    assert r.warnings == [], r.warnings
    assert r.template_share < DEFAULTS.max_template_share
    labels = {d.label: d for d in r.labels}
    for intent in ("track_order", "cancel_order", "return_item", "refund_status", "change_address",
                   "reset_password", "update_payment", "contact_human"):
        assert labels[intent].distinct_skeletons >= 80, labels[intent]
    for error in ("missing_order_id", "ambiguous", "rejected"):
        assert labels[f"error:{error}"].rows >= 100


def test_the_example_mixed_with_templates_warns_for_the_templated_labels_only():
    rows = [r for r in example_rows() if r[1].get("intent") not in ("track_order", "cancel_order", "return_item")]
    r = report(rows + template_rows(450))
    flagged = {w.split("'")[1] for w in r.warnings if w.startswith("data.train label")}
    assert flagged == {"track_order", "cancel_order", "return_item"}


def test_coverage_table_puts_missing_ids_next_to_their_intent():
    rows = [(f"please cancel my order {i}", {"intent": "cancel_order", "order_id": f"A{i:05d}"}) for i in range(5)]
    rows += [(f"where is my parcel {i}", {"intent": "track_order", "order_id": f"B{i:05d}"}) for i in range(5)]
    rows += [("cancel my order", {"error": "missing_order_id"}), ("my parcel is late", {"error": "missing_order_id"}),
             ("tell me a joke", {"error": "rejected"})]
    r = report(rows)
    assert r.coverage["cancel_order"] == {"missing_order_id": 1}
    assert r.coverage["track_order"] == {"missing_order_id": 1}
    assert r.coverage[NO_INTENT] == {"rejected": 1}
    assert r.error_values == ["missing_order_id", "rejected"]


def test_small_labels_are_reported_but_not_judged():
    rows = [("help", {"error": "ambiguous"})] * 5
    r = report(rows)
    assert r.labels[0].rows == 5 and not r.labels[0].judged
    assert r.warnings == []
