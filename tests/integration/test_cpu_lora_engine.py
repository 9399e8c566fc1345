"""lorafleet's CPU LoRA ops inside a real vLLM engine (the ``lorafleet_cpu_lora`` plugin, on by default).

One engine on the tiny base with two adapter slots (``--max-loras 2``). Greedy answers of the base and of two
strong random adapters are taken alone, then again with all three kinds of request in flight at once: each
must answer as it did alone (base tokens in those batches carry the no-adapter index -1, which the ops must
leave without a LoRA term; a batch of both adapters takes the ops' one-matmul-over-the-slots path).
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

    adapters = {name: make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / name, r=8, scale=40.0, seed=seed)
                for name, seed in (("strong", 7), ("other", 8))}
    cfg = EngineConfig.from_settings(settings, settings.layout.base(TINY_BASE), TINY_BASE, max_loras=2,
                                     max_lora_rank=8, log_path=tmp_path / "vllm.log",
                                     extra_env={"VLLM_LOGGING_LEVEL": "INFO"})  # the line it looks for is INFO
    engine = LocalEngine(cfg)
    env = engine.environment()
    assert env[ENABLE_ENV] == "1" and (not env.get("VLLM_PLUGINS") or PLUGIN_NAME in env["VLLM_PLUGINS"])
    installed = [ep.name for ep in entry_points(group="vllm.general_plugins")]
    assert PLUGIN_NAME in installed, f"{PLUGIN_NAME} is not an installed vLLM plugin ({installed}): run `make setup`"
    with engine:
        for name, folder in adapters.items():
            httpx.post(f"{engine.root_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(folder)},
                       timeout=60).raise_for_status()
        client = OpenAI(base_url=engine.url, api_key="unused", max_retries=0, timeout=120)

        def answer(model: str, prompt: str) -> str:
            return client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0).choices[0].text

        models = (TINY_BASE, *adapters)
        alone = {(m, p): answer(m, p) for m in models for p in PROMPTS}
        for a, b in ((TINY_BASE, "strong"), (TINY_BASE, "other"), ("strong", "other")):
            assert sum(alone[a, p] != alone[b, p] for p in PROMPTS) >= 6, f"{a} and {b} should answer differently"

        jobs = [(m, p) for p in PROMPTS for m in models] * 2
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            mixed = list(pool.map(lambda j: answer(*j), jobs))
        log = (tmp_path / "vllm.log").read_text(errors="replace")
    plugin_lines = [line for line in log.splitlines() if "plugin" in line.lower() or "cpu_lora" in line]
    assert "lorafleet CPU LoRA ops on" in log, (f"no process of the engine installed the ops; VLLM_PLUGINS="
                                                f"{env.get('VLLM_PLUGINS')!r}; its plugin lines: {plugin_lines}")
    same = [mixed[i] == alone[j] for i, j in enumerate(jobs)]
    took_another = [(m, p) for (m, p), got in zip(jobs, mixed)
                    if got != alone[m, p] and any(got == alone[o, p] != alone[m, p] for o in models if o != m)]
    assert not took_another, f"answered with another model's tokens in a mixed batch: {took_another}"
    assert sum(same) >= len(jobs) - 2, f"{sum(same)}/{len(jobs)} mixed answers equal the answer alone"
