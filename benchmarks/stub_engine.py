"""A stub upstream for the serving benchmarks: streams TOKENS chat chunks, at once or paced like
an engine. Run: python benchmarks/stub_engine.py PORT"""

from __future__ import annotations

import asyncio
import json
import sys

__all__ = ["TOKENS", "PACED_MS", "stub_app", "run_stub"]

TOKENS = 16
PACED_MS = 20.0  # per token, as an engine decoding 50 tokens/s per stream


async def stub_app(scope, receive, send) -> None:
    """Streams TOKENS chunks; with ``stub_delay_ms`` in the request body, chunk k is due k times
    that after the request arrived (a late wake-up is not carried over to the next chunk)."""
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/health" or scope["path"] == "/v1/models":
        body = b'{"data": [{"id": "stub", "parent": null}]}'
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    chunk = {"id": "x", "object": "chat.completion.chunk", "model": "stub",
             "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    line = f"data: {json.dumps(chunk)}\n\n".encode()
    delay_s = float(json.loads(raw or b"{}").get("stub_delay_ms", 0)) / 1e3
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(1, TOKENS + 1):
        if delay_s:
            await asyncio.sleep(max(0.0, start + k * delay_s - loop.time()))
        await send({"type": "http.response.body", "body": line, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def run_stub(port: int) -> None:
    import uvicorn

    uvicorn.run(stub_app, host="127.0.0.1", port=port, log_level="error", access_log=False)




if __name__ == "__main__":
    run_stub(int(sys.argv[1]))
