"""Write the support-intents example: train/eval/golden chat JSONL (and the small DPO set).

Deterministic (fixed seed); run from anywhere:

    .venv/bin/python examples/support-intents/make_dataset.py

The raw material is the hand-written seed messages in ``seeds.py`` (hundreds of phrasings, each
list what real customers write for one intent or error object). On top of a seed the generator
puts what real traffic does to text: order references in many written forms and positions,
lower case, typos, text speak, dropped punctuation, emoji, greetings, sign-offs and rambling
context sentences, and a few rows with no system prompt or a paraphrased one. The last 820 training
rows are drawn after the train/eval/golden split (so the locked sets stay as they were) and include
two requests of different intents joined into one message, answered ``ambiguous``.

Answers (``schema.json``): ``{"intent": ..., "order_id": ...}`` for a clear order request,
``{"intent": ...}`` for reset_password / update_payment / contact_human (never an order_id, even
when the message names an order), or ``{"error": "missing_order_id" | "ambiguous" | "rejected"}``.
An order id is never invented: an order intent without an id is ``missing_order_id``. Ids are
normalised: "k48213", "#K48213", "order no. K48213" all answer ``"order_id":"K48213"``.

The pool is deduplicated exactly and nearly (the checks ``platform data check`` runs) before the
split, so no eval or golden row leaks from train; a candidate near any row of the separately
written ``hard.jsonl`` is dropped too, so the hard set stays unseen.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from lorafleet.training.dedup import NearDuplicateIndex, normalize_text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from seeds import (AMBIGUOUS, INJECTION, ITEMS, NO_ID, OFF_TOPIC, PLAIN,  # noqa: E402
                   PLAIN_WITH_ORDER, WITH_ID)

DPO_DIR = HERE.parent / "dpo-support"
SEED = 19
SYSTEM = "Extract the support request as JSON."
PARAPHRASED_SYSTEM = [
    "Return the customer's support request as a JSON object.",
    "Classify this support message. Reply with JSON only.",
    "You turn customer messages into JSON.",
]
N_TRAIN, N_EVAL, N_GOLDEN = 1640, 220, 60
N_EXTRA = 820  # training rows drawn after the locked split (eval and golden stay as they were)

# (kind, weight): how often a candidate of each kind is drawn.
KINDS = [("with_id", 41), ("no_id_plus_ref", 13), ("missing", 13), ("plain", 24), ("plain_with_order", 2),
         ("off_topic", 8), ("injection", 6), ("ambiguous", 8)]

REF_FORMS = [("{id}", 30), ("#{id}", 15), ("order {id}", 15), ("order #{id}", 9), ("order no. {id}", 6),
             ("ord {id}", 5), ("order number {id}", 5), ("order no {id}", 3), ("order ID {id}", 4),
             ("ref {id}", 3), ("order id: {id}", 3), ("ord# {id}", 2)]
PREFIXES = ["hi ", "hello, ", "hey ", "hey there, ", "good morning, ", "Hi team, ", "Dear sir/madam, ", "namaste, ",
            "excuse me, ", "quick one: ", "urgent: ", "hiya, ", "ok so ", "um ", "sorry to bother you but ",
            "Hello support, ", "yo ", "good evening, ", "hi, hope you're well. "]
SUFFIXES = [" thanks", " thank you!", " pls", " please", " asap", " cheers", " ta", " thx", "!!", "?", ".",
            " 🙏", " 😡", " thanks in advance", " kindly do the needful", " appreciate it", " ??",
            " this is the 3rd time i'm asking", " many thanks", " 😭", " 🙂", "!!!"]
CONTEXT = ["I ordered it last week.", "This is really frustrating.", "I've emailed twice already.",
           "My name is Priya.", "sorry for my english.", "Been a customer for years.", "Long time buyer here.",
           "I'm travelling next week.", "Not impressed tbh.", "Thanks for your help in advance.",
           "It was a birthday present.", "I paid by card.", "Ordered through the app."]
EMOJI = ["😡", "🙏", "😭", "🙂", "😤", "👍", "❓", "📦", "💳", "😩"]
TEXT_SPEAK = {"please": "pls", "you": "u", "your": "ur", "thanks": "thx", "are": "r", "okay": "ok",
              "because": "coz", "tomorrow": "tmrw", "message": "msg"}
ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_WORD = re.compile(r"[A-Za-z']+")


def _weighted(rng: random.Random, pairs: list[tuple[str, int]]) -> str:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs])[0]


def _new_id(rng: random.Random) -> str:
    return rng.choice(ID_LETTERS) + f"{rng.randrange(10000, 100000)}"


def _written(rng: random.Random, oid: str) -> str:
    """How a customer writes the id itself (some in lower case; the answer is upper case)."""
    return oid.lower() if rng.random() < 0.12 else oid


def _fill(rng: random.Random, seed: str, oid: str) -> str:
    ref = _weighted(rng, REF_FORMS).format(id=_written(rng, oid))
    bare = ("#" if rng.random() < 0.2 else "") + _written(rng, oid)
    return seed.format(ref=ref, id=bare, item=rng.choice(ITEMS))


def _with_ref(rng: random.Random, text: str, oid: str) -> str:
    """Put an order reference into a message that has none: start, middle or end."""
    ref = _weighted(rng, REF_FORMS).format(id=_written(rng, oid))
    r = rng.random()
    m = re.search(r"\b(order|package|parcel|delivery|purchase)\b", text)
    if m and r < 0.35:
        return text[:m.end()] + " " + ref.replace("order ", "").replace("ord ", "") + text[m.end():]
    if r < 0.6:
        return rng.choice(["{r} - {t}", "{r}: {t}", "{r} {t}", "re {r}, {t}"]).format(r=ref, t=text)
    return rng.choice(["{t} {r}", "{t}, {r}", "{t}. {r}", "{t} ({r})", "{t}, it's {r}",
                       "{t}. the order number is {i}", "{t} - {r}"]).format(t=text, r=ref, i=_written(rng, oid))


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    op = rng.random()
    if op < 0.3:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swap
    if op < 0.6:
        return word[:i] + word[i + 1:]  # drop
    if op < 0.8:
        return word[:i] + word[i] + word[i:]  # double
    return word[:i] + rng.choice("qwertyuiopasdfghjklzxcvbnm") + word[i + 1:]  # neighbour-ish slip


def _noise(rng: random.Random, text: str, oid: str | None) -> str:
    """Real traffic: greetings, context, text speak, typos, casing, punctuation, emoji."""
    if rng.random() < 0.12:
        ctx = rng.choice(CONTEXT)
        text = f"{ctx} {text}" if rng.random() < 0.5 else f"{text}. {ctx}"
    if rng.random() < 0.25:
        text = rng.choice(PREFIXES) + text
    if rng.random() < 0.3:
        text = text + rng.choice(SUFFIXES)
    if rng.random() < 0.15:
        text = " ".join(TEXT_SPEAK.get(w, w) for w in text.split(" "))
    if rng.random() < 0.3:
        words = text.split(" ")
        spots = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        for i in rng.sample(spots, min(len(spots), rng.choice([1, 1, 2]))):
            words[i] = _typo(rng, words[i])
        text = " ".join(words)
    if rng.random() < 0.2:
        text = re.sub(r"[.,!?;]", "", text)
    r = rng.random()
    if r < 0.35:
        lowered = text.lower()
        text = lowered if oid is None or rng.random() < 0.3 else lowered.replace(oid.lower(), oid)
    elif r < 0.5:
        text = text[0].upper() + text[1:]
    elif r < 0.53:
        text = text.upper()
    if rng.random() < 0.07:
        e = rng.choice(EMOJI)
        text = f"{e} {text}" if rng.random() < 0.3 else f"{text} {e}"
    return re.sub(r"\s+", " ", text).strip()


def _answer(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _row(rng: random.Random, user: str, target: dict) -> dict:
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": _answer(target)}]
    r = rng.random()
    if r < 0.94:
        msgs.insert(0, {"role": "system", "content": SYSTEM})
    elif r < 0.97:
        msgs.insert(0, {"role": "system", "content": rng.choice(PARAPHRASED_SYSTEM)})
    return {"messages": msgs}


# Two requests in one message ("where is X, also change my card") are ambiguous: the hand-written
# seeds hold a dozen; rows drawn after the locked split also join two requests of different
# intents (never cancel + refund, which customers write as one request: "cancel X and refund me").
JOINS = [" and ", ", also ", ". also ", " and also ", ", and ", " + ", ". Also ", " & ", " plus "]
EXTRA_KINDS = [*KINDS, ("two_requests", 8)]
ONE_REQUEST = {frozenset({"cancel_order", "refund_status"})}


def _request(rng: random.Random, intent: str) -> str:
    pool = (WITH_ID.get(intent, []) + NO_ID.get(intent, [])) or PLAIN[intent]
    return _fill(rng, rng.choice(pool), _new_id(rng)).rstrip(".!?")


def two_requests(rng: random.Random) -> str:
    intents = sorted({*WITH_ID, *NO_ID, *PLAIN})
    while True:
        a, b = rng.sample(intents, 2)
        if frozenset({a, b}) not in ONE_REQUEST:
            break
    second = _request(rng, b)
    return _request(rng, a) + rng.choice(JOINS) + second[0].lower() + second[1:]


def candidate(rng: random.Random, kinds: list[tuple[str, int]] = KINDS) -> dict:
    """One row of a randomly drawn kind."""
    kind = _weighted(rng, kinds)
    oid = _new_id(rng)
    if kind == "two_requests":
        return _row(rng, _noise(rng, two_requests(rng), None), {"error": "ambiguous"})
    if kind == "with_id":
        intent = rng.choice(sorted(WITH_ID))
        text, target = _fill(rng, rng.choice(WITH_ID[intent]), oid), {"intent": intent, "order_id": oid}
    elif kind == "no_id_plus_ref":
        intent = rng.choice(sorted(NO_ID))
        text = _with_ref(rng, _fill(rng, rng.choice(NO_ID[intent]), oid), oid)
        target = {"intent": intent, "order_id": oid}
    elif kind == "missing":
        intent = rng.choice(sorted(NO_ID))
        text, target, oid = _fill(rng, rng.choice(NO_ID[intent]), oid), {"error": "missing_order_id"}, None
    elif kind == "plain":
        intent = rng.choice(sorted(PLAIN))
        text, target, oid = _fill(rng, rng.choice(PLAIN[intent]), oid), {"intent": intent}, None
    elif kind == "plain_with_order":
        intent = rng.choice(sorted(PLAIN_WITH_ORDER))
        text, target = _fill(rng, rng.choice(PLAIN_WITH_ORDER[intent]), oid), {"intent": intent}
    else:
        pool = {"off_topic": OFF_TOPIC, "injection": INJECTION, "ambiguous": AMBIGUOUS}[kind]
        error = "ambiguous" if kind == "ambiguous" else "rejected"
        text, target = _fill(rng, rng.choice(pool), oid), {"error": error}
    return _row(rng, _noise(rng, text, oid), target)


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def user_of(row: dict) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def build(n_train: int = N_TRAIN, n_eval: int = N_EVAL, n_golden: int = N_GOLDEN, seed: int = SEED,
          hard: list[dict] | None = None, n_extra: int = N_EXTRA) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    hard_index = NearDuplicateIndex()
    for row in hard or []:
        hard_index.add(normalize_text(user_of(row)), 0)
    index = NearDuplicateIndex()

    def fill(rows: list[dict], size: int, kinds: list[tuple[str, int]], max_attempts: int) -> None:
        """Append new candidates to ``rows`` until it holds ``size``: none near a row drawn before or a hard row."""
        attempts = 0
        while len(rows) < size and attempts < max_attempts:
            attempts += 1
            row = candidate(rng, kinds)
            text = normalize_text(user_of(row))
            if hard_index.match(text) is None and index.add_if_new(text):
                rows.append(row)
        if len(rows) < size:
            raise SystemExit(f"only {len(rows)} distinct rows of {size} after {attempts} attempts")

    target = n_train + n_eval + n_golden
    pool: list[dict] = []
    fill(pool, target, KINDS, 100_000)
    rng.shuffle(pool)
    splits = {"train": pool[:n_train], "eval": pool[n_train:n_train + n_eval], "golden": pool[n_train + n_eval:target]}
    # More training rows, drawn after the split so that the locked eval and golden rows stay as they
    # were; the same index keeps them distinct from every row above (and from the hard set).
    fill(splits["train"], n_train + n_extra, EXTRA_KINDS, 100_000)
    return splits


def dpo_rows(rows: list[dict], rng: random.Random) -> list[dict]:
    """Preference pairs: the compact JSON is chosen over a chatty, invented or wrong answer."""
    out = []
    for row in rows:
        msgs = row["messages"]
        good = msgs[-1]["content"]
        obj = json.loads(good)
        r = rng.random()
        if r < 0.4:
            bad = "Sure! Here is the JSON you asked for: " + good
        elif "intent" in obj and "order_id" not in obj and r < 0.7:
            bad = _answer({**obj, "order_id": "A00000"})  # an invented id
        elif "intent" in obj and r < 0.8:
            bad = _answer({"intent": "contact_human"} if obj["intent"] != "contact_human" else {"error": "ambiguous"})
        elif obj.get("error") == "rejected" and r < 0.8:
            bad = _answer({"error": "ambiguous"})
        else:
            bad = "I'm sorry, I cannot help with that request."
        out.append({"prompt": msgs[:-1], "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}]})
    return out


def near_hits(rows: list[dict], others: list[dict]) -> list[tuple[str, int]]:
    """(user text, index into ``others``) of each row that is an exact or near duplicate of one of ``others``."""
    index = NearDuplicateIndex()
    for i, row in enumerate(others):
        index.add(normalize_text(user_of(row)), i)
    hits = []
    for row in rows:
        m = index.match(normalize_text(user_of(row)))
        if m is not None:
            hits.append((user_of(row), m[0]))
    return hits


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows):4d} rows to {path}")


def main() -> None:
    hard = read_rows(HERE / "hard.jsonl")
    splits = build(hard=hard)
    for name, rows in splits.items():
        _write(HERE / f"{name}.jsonl", rows)
    if hard:
        hits = near_hits(hard, splits["train"])
        print(f"hard.jsonl: {len(hard)} rows, {len(hits)} near a train row")
    rng = random.Random(SEED + 1)
    _write(DPO_DIR / "train.jsonl", dpo_rows(splits["train"][:240], rng))
    _write(DPO_DIR / "eval.jsonl", dpo_rows(splits["eval"][:40], rng))


if __name__ == "__main__":
    main()
