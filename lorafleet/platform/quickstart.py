"""The quickstart (README command 1): base pull -> vLLM engine -> one chat completion.

Each step prints what it does and how long it took. Later steps of the platform loop
(train -> push -> serve -> promote) join here as they land.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lorafleet.core.settings import DEFAULT_BASE, Settings

__all__ = ["run_quickstart", "QUESTION"]

QUESTION = "What is the capital of France?"


def run_quickstart(settings: Settings, say: Callable[[str], None] = print) -> str:
    """Run the quickstart; return the model's answer."""
    from openai import OpenAI

    from lorafleet.platform.base_pull import pull_base
    from lorafleet.serving.engine import EngineConfig, LocalEngine

    t0 = time.perf_counter()
    say(f"[1/3] base pull {DEFAULT_BASE} (home: {settings.home})")
    manifest, created = pull_base(settings, DEFAULT_BASE, progress=lambda m: say(f"      {m}"))
    say(f"      {'pulled' if created else 'already present'}: {manifest.parameter_count / 1e6:.1f}M params "
        f"in {time.perf_counter() - t0:.1f}s")

    t1 = time.perf_counter()
    log = settings.layout.logs / "quickstart-engine.log"
    say(f"[2/3] starting vLLM on {DEFAULT_BASE} (log: {log})")
    config = EngineConfig.from_settings(settings, settings.layout.base(DEFAULT_BASE), DEFAULT_BASE, log_path=log)
    with LocalEngine(config) as engine:
        say(f"      ready at {engine.url} in {time.perf_counter() - t1:.1f}s")
        say(f"[3/3] chat completion with the openai client: {QUESTION!r}")
        client = OpenAI(base_url=engine.url, api_key="unused")
        t2 = time.perf_counter()
        reply = client.chat.completions.create(
            model=DEFAULT_BASE, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=32
        )
        answer = reply.choices[0].message.content or ""
        say(f"      {DEFAULT_BASE}: {answer!r} ({reply.usage.completion_tokens} tokens, "
            f"{time.perf_counter() - t2:.2f}s)")
    say(f"quickstart done in {time.perf_counter() - t0:.0f}s")
    return answer
