"""A real vLLM engine on the tiny base, called with the official openai client."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import TINY_BASE, make_lora_adapter

PROMPT = [{"role": "user", "content": "Say something about the weather."}]


def _greedy(client: OpenAI, model: str) -> str:
    r = client.chat.completions.create(model=model, messages=PROMPT, temperature=0, max_tokens=12, seed=0)
    return r.choices[0].message.content


@pytest.fixture(scope="module")
def client(engine) -> OpenAI:
    return OpenAI(base_url=engine.url, api_key="unused", max_retries=0)


def test_base_answers_a_chat_completion(client: OpenAI) -> None:
    r = client.chat.completions.create(model=TINY_BASE, messages=PROMPT, temperature=0, max_tokens=8)
    assert r.model == TINY_BASE
    assert r.usage.completion_tokens > 0
    assert r.choices[0].finish_reason in {"stop", "length"}


def test_runtime_loaded_adapter_changes_the_greedy_answer(engine, client, settings, tmp_path: Path) -> None:
    adapter = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "adapter", r=8, scale=40.0)
    resp = httpx.post(
        f"{engine.root_url}/v1/load_lora_adapter",
        json={"lora_name": "weather-test", "lora_path": str(adapter)},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    listed = {m.id: m for m in client.models.list().data}
    assert "weather-test" in listed
    base_answer = _greedy(client, TINY_BASE)
    adapter_answer = _greedy(client, "weather-test")
    assert base_answer != adapter_answer
    assert _greedy(client, "weather-test") == adapter_answer  # greedy is repeatable


def test_unknown_model_gets_vllms_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-adapter", messages=PROMPT, max_tokens=4)
    assert info.value.status_code == 404


def _generated_tokens(engine) -> float:
    text = httpx.get(f"{engine.root_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:generation_tokens_total{"))


def test_an_evaluation_stream_closed_early_stops_the_engine_generating(engine) -> None:
    """What the evaluation's early stop relies on: closing the stream aborts the request in vLLM."""
    from lorafleet.training.evaluate import generate_answers

    prompts = [[{"role": "user", "content": f"Tell me a long story about the number {i}."}] for i in range(8)]
    before = _generated_tokens(engine)
    # long answers: on the 2-core AVX512-BF16 machine, at 1,000 tokens the stopped run spent 6,002 and
    # 8,000 of 8,000 (two runs: the answers were all written before the closes landed); at 2,000, 131
    # of 16,000
    full = generate_answers(engine.url, TINY_BASE, prompts, 2000)
    spent_full = _generated_tokens(engine) - before
    stopped = generate_answers(engine.url, TINY_BASE, prompts, 2000, stop_when=lambda text: len(text) > 0)
    spent_stopped = _generated_tokens(engine) - before - spent_full
    assert all(s and f.startswith(s) for s, f in zip(stopped, full, strict=True)), (stopped, full)
    assert spent_full > 8 * 1000, spent_full  # the tiny model rambles: the comparison means something
    assert spent_stopped < spent_full / 2, (spent_stopped, spent_full)


def test_scoring_runs_of_two_models_in_one_pool_keeps_each_runs_answers(engine, settings, tmp_path: Path) -> None:
    """platform train's evaluation answers the base's and the adapter's rows from one pool; each run's
    scores must be what that model scores on its own."""
    from lorafleet.training.config import load_train_config
    from lorafleet.training.evaluate import evaluate_on_engine, load_eval_sets, score_runs

    adapter = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "adapter", r=8, scale=40.0)
    httpx.post(f"{engine.root_url}/v1/load_lora_adapter", json={"lora_name": "pool-test", "lora_path": str(adapter)},
               timeout=60).raise_for_status()
    example = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "train.yaml"
    cfg = load_train_config(example, [f"base={TINY_BASE}", "eval.max_rows=6", "eval.max_new_tokens=12"])
    sets = load_eval_sets(cfg)
    together = score_runs(engine.url, [*((TINY_BASE, s) for s in sets), *(("pool-test", s) for s in sets)], cfg)
    alone = [*evaluate_on_engine(engine.url, TINY_BASE, cfg, sets).values(),
             *evaluate_on_engine(engine.url, "pool-test", cfg, sets).values()]
    assert len(together) == 2 * len(sets) >= 6
    assert together == alone
    samples = [str(s.get("samples")) for s in together]  # the two models answer differently: a mix-up would show
    assert samples[: len(sets)] != samples[len(sets):]
