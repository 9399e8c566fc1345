"""A small real HTTP server posing as a vLLM engine, for the faults a real vLLM cannot be made
to produce on demand: a connection dropped mid-body, a body that is not JSON, a stream that
never ends. What a chat request gets is chosen by its first message's content (``MODES``);
adapter loads and unloads are recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

from lorafleet.engine.process import free_port

__all__ = ["FakeEngine", "MODES"]

BASE = "fake-base"
MODES = ("ok", "drop", "badjson", "hang-body", "hang", "drop-stream", "big-stream", "slow-close")


def _chunk(text: str, finish: str | None = None) -> bytes:
    data = {"id": "x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


class FakeEngine:
    def __init__(self) -> None:
        self.port = free_port()
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> "FakeEngine":  # noqa: UP037
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            await self._answer(method, path, json.loads(body) if body else {}, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    def _head(writer, status: int = 200, kind: str = "application/json", length: int | None = None) -> None:
        size = f"content-length: {length}\r\n" if length is not None else ""
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\n{size}connection: close\r\n\r\n".encode())

    def _json(self, writer, data: dict | str, status: int = 200) -> None:
        raw = (json.dumps(data) if isinstance(data, dict) else data).encode()
        self._head(writer, status, length=len(raw))
        writer.write(raw)

    async def _answer(self, method: str, path: str, body: dict, writer) -> None:
        if path == "/health":
            return self._json(writer, {})
        if path == "/v1/models":
            return self._json(writer, {"data": [{"id": BASE, "parent": None}]})
        if path == "/v1/load_lora_adapter":
            self.loads.append(body["lora_name"])
            return self._json(writer, "ok")
        if path == "/v1/unload_lora_adapter":
            self.unloads.append(body["lora_name"])
            return self._json(writer, "ok")
        mode = body["messages"][0]["content"] if body.get("messages") else "ok"
        if body.get("stream"):  # chunked, as vLLM (uvicorn) sends a stream
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                         b"connection: close\r\n\r\n")

            def send(data: bytes) -> None:
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            send(_chunk("{"))
            await writer.drain()
            if mode == "hang":
                await asyncio.sleep(3600)
            elif mode == "drop-stream":
                writer.transport.abort()
                return None
            elif mode == "big-stream":
                for _ in range(200):
                    send(_chunk("x" * 64))
                    await writer.drain()
            send(_chunk("}", "stop") + b"data: [DONE]\n\n")
            if mode == "slow-close":  # the last event is out; the body's end comes a while later
                await writer.drain()
                await asyncio.sleep(2)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return None
        if mode == "drop":  # promises 1,000 bytes, sends 10, hangs up
            self._head(writer, length=1000)
            writer.write(b'{"id": "x"')
            await writer.drain()
            writer.transport.abort()
        elif mode == "badjson":
            self._json(writer, "{this is not json")
        elif mode == "hang-body":
            self._head(writer, length=1000)
            await writer.drain()
            await asyncio.sleep(3600)
        else:
            self._json(writer, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
        return None
