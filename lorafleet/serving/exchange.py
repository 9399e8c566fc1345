"""What one request produced, gathered from a JSON body or from an SSE stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["Outcome", "SSEAccumulator", "read_body"]


@dataclass
class Outcome:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    texts: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str | None] = field(default_factory=dict)
    ttft_s: float | None = None


def read_body(data: dict, kind: str) -> Outcome:
    """Outcome of a non-streamed chat or text completion body."""
    out = Outcome()
    usage = data.get("usage") or {}
    out.prompt_tokens = usage.get("prompt_tokens") or 0
    out.completion_tokens = usage.get("completion_tokens") or 0
    for c in data.get("choices") or []:
        i = c.get("index", 0)
        out.texts[i] = (c.get("message") or {}).get("content") or "" if kind == "chat" else c.get("text") or ""
        out.finish_reasons[i] = c.get("finish_reason")
    return out


class SSEAccumulator:
    """Splits an upstream SSE byte stream into events, noting text, finish reasons and usage.

    ``feed`` returns the complete events to pass on. A usage-only chunk the client did not
    ask for (the gateway asks for usage to count tokens) is held back, since many clients
    read ``chunk.choices[0]`` unguarded.
    """

    def __init__(self, kind: str, forward_usage: bool) -> None:
        self.kind = kind
        self.forward_usage = forward_usage
        self.outcome = Outcome()
        self._buffer = b""

    def feed(self, chunk: bytes, now_s: float) -> list[bytes]:
        self._buffer += chunk
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [e + b"\n\n" for e in events if self._note(e, now_s)]

    def flush(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []

    def _note(self, event: bytes, now_s: float) -> bool:
        if not event.startswith(b"data: {"):
            return True
        try:
            data = json.loads(event[6:])
        except ValueError:
            return True
        choices = data.get("choices") or []
        out = self.outcome
        for c in choices:
            i = c.get("index", 0)
            piece = (c.get("delta") or {}).get("content") if self.kind == "chat" else c.get("text")
            if piece:
                if out.ttft_s is None:
                    out.ttft_s = now_s
                out.texts[i] = out.texts.get(i, "") + piece
            else:
                out.texts.setdefault(i, "")
            if c.get("finish_reason") is not None:
                out.finish_reasons[i] = c["finish_reason"]
        usage = data.get("usage")
        if usage:
            out.prompt_tokens = usage.get("prompt_tokens") or 0
            out.completion_tokens = usage.get("completion_tokens") or 0
            if not choices and not self.forward_usage:
                return False
        return True
