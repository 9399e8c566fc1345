"""What one request produced, gathered from a JSON body or from an SSE stream: chat and text
completions (``choices``) and the Responses API (``output`` items, ``response.*`` events)."""

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


def _response_finish(response: dict) -> str | None:
    """A Responses API status as a finish reason: length when cut off by max_output_tokens."""
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "length" if reason in ("max_output_tokens", "length") else reason or "incomplete"
    return "stop" if status == "completed" else status


def _read_response(data: dict, out: Outcome) -> Outcome:
    usage = data.get("usage") or {}
    out.prompt_tokens = usage.get("input_tokens") or 0
    out.completion_tokens = usage.get("output_tokens") or 0
    text = "".join(part.get("text") or "" for item in data.get("output") or [] if item.get("type") == "message"
                   for part in item.get("content") or [] if part.get("type") == "output_text")
    out.texts[0] = text
    out.finish_reasons[0] = _response_finish(data)
    return out


def read_body(data: dict, kind: str) -> Outcome:
    """Outcome of a non-streamed chat, text completion or Responses API body."""
    out = Outcome()
    if kind == "responses":
        return _read_response(data, out)
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
    read ``chunk.choices[0]`` unguarded. ``size_bytes`` is how much has passed through;
    ``ended`` turns true with the stream's last event (``data: [DONE]``, or the Responses API's
    ``response.completed`` / ``.incomplete`` / ``.failed``): a client that has it has the whole
    answer, and may hang up before the engine closes its side.
    """

    def __init__(self, kind: str, forward_usage: bool) -> None:
        self.kind = kind
        self.forward_usage = forward_usage
        self.outcome = Outcome()
        self.size_bytes = 0
        self.ended = False
        self._buffer = b""

    def feed(self, chunk: bytes, now_s: float) -> list[bytes]:
        self.size_bytes += len(chunk)
        self._buffer += chunk
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [e + b"\n\n" for e in events if self._note(e, now_s)]

    def flush(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []

    def _note(self, event: bytes, now_s: float) -> bool:
        if self.kind == "responses":
            return self._note_response_event(event, now_s)
        if not event.startswith(b"data: {"):
            self.ended = self.ended or event.strip() == b"data: [DONE]"
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

    def _note_response_event(self, event: bytes, now_s: float) -> bool:
        """``event: response.output_text.delta`` / ``data: {...}``: text from the deltas, usage
        and status from ``response.completed`` (or ``.incomplete``)."""
        at = event.find(b"data: {")
        if at < 0:
            return True
        try:
            data = json.loads(event[at + 6:])
        except ValueError:
            return True
        kind, out = data.get("type"), self.outcome
        if kind == "response.output_text.delta":
            piece = data.get("delta") or ""
            if piece and out.ttft_s is None:
                out.ttft_s = now_s
            out.texts[0] = out.texts.get(0, "") + piece
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.ended = True
            response = data.get("response") or {}
            texts = dict(out.texts)
            _read_response(response, out)
            if not out.texts.get(0) and texts.get(0):
                out.texts[0] = texts[0]
        return True
