"""lorafleet's CPU LoRA ops inside a real vLLM engine (the ``lorafleet_cpu_lora`` plugin, on by default).

One engine on the tiny base with a single adapter slot (``--max-loras 1``). Greedy answers of the base and of a
strong random adapter are taken alone, then again with both kinds of request in flight at once:
each must answer as it did alone (base tokens
in those batches carry the no-adapter index -1, which the ops must leave without a LoRA term).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

import httpx
from openai import OpenAI

from lorafleet.engine.cpu_lora import ENABLE_ENV, PLUGIN_NAME
from tests.conftest import TINY_BASE, make_lora_adapter

PROMPTS = [f"customer message {i}: where is my order K{48213 + i}" for i in range(8)]


def test_mixed_batches_answer_as_each_model_alone(settings, tiny_base, tmp_path) -> None:
    from lorafleet.engine.vllm import EngineConfig, LocalEngine

    adapter = make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / "lora", r=8, scale=40.0, seed=7)
    cfg = EngineConfig.from_settings(settings, settings.layout.base(TINY_BASE), TINY_BASE, max_loras=1,
                                     max_lora_rank=8, log_path=tmp_path / "vllm.log",
                                     extra_env={"VLLM_LOGGING_LEVEL": "INFO"})  # the line it looks for is INFO
    engine = LocalEngine(cfg)
    env = engine.environment()
    assert env[ENABLE_ENV] == "1" and (not env.get("VLLM_PLUGINS") or PLUGIN_NAME in env["VLLM_PLUGINS"])
    installed = [ep.name for ep in entry_points(group="vllm.general_plugins")]
    assert PLUGIN_NAME in installed, f"{PLUGIN_NAME} is not an installed vLLM plugin ({installed}): run `make setup`"
    with engine:
        httpx.post(f"{engine.root_url}/v1/load_lora_adapter", json={"lora_name": "strong", "lora_path": str(adapter)},
                   timeout=60).raise_for_status()
        client = OpenAI(base_url=engine.url, api_key="unused", max_retries=0, timeout=120)

        def answer(model: str, prompt: str) -> str:
            return client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0).choices[0].text

        base_alone = [answer(TINY_BASE, p) for p in PROMPTS]
        adapter_alone = [answer("strong", p) for p in PROMPTS]
        assert sum(a != b for a, b in zip(base_alone, adapter_alone)) >= 6, "the adapter should change the answers"

        jobs = [(m, p) for p in PROMPTS for m in (TINY_BASE, "strong")] * 2
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            mixed = list(pool.map(lambda j: answer(*j), jobs))
        log = (tmp_path / "vllm.log").read_text(errors="replace")
    plugin_lines = [line for line in log.splitlines() if "plugin" in line.lower() or "cpu_lora" in line]
    assert "lorafleet CPU LoRA ops on" in log, (f"no process of the engine installed the ops; VLLM_PLUGINS="
                                                f"{env.get('VLLM_PLUGINS')!r}; its plugin lines: {plugin_lines}")
    alone = {(TINY_BASE, p): a for p, a in zip(PROMPTS, base_alone)} | {("strong", p): a
                                                                        for p, a in zip(PROMPTS, adapter_alone)}
    same = [mixed[i] == alone[j] for i, j in enumerate(jobs)]
    base_took_adapter = [mixed[i] == alone[("strong", j[1])] != alone[j] for i, j in enumerate(jobs) if j[0] == TINY_BASE]
    assert not any(base_took_adapter), "a base request answered with the adapter's tokens in a mixed batch"
    assert sum(same) >= len(jobs) - 2, f"{sum(same)}/{len(jobs)} mixed answers equal the answer alone"
