"""Embedding drift: how far the live prompts' centroid has moved from the training centroid.

Off the request path: the gateway offers 1 in ``sample_every`` prompts to a bounded queue
(``put_nowait``; when the queue is full the prompt is dropped and counted, a request never
waits), and one background thread embeds them in batches with the offline MiniLM. Per
(route, version, variant) a sliding window of the last ``window`` embeddings is kept as a
running sum, so the live centroid and its cosine distance to the version's training
centroid cost O(384) per series when Prometheus scrapes.

Rule of thumb for all-MiniLM-L6-v2 centroids (measured on the support-intents example):
held-out prompts of the training task stay near 0.05 (a window of 20) and lower with larger
windows; prompts on unrelated subjects reach 0.8, and a half-and-half mix about 0.2.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lorafleet.embedding.minilm import cosine_distance

__all__ = ["EmbeddingDriftSampler", "Embed"]

log = logging.getLogger("lorafleet.gateway.embedding_drift")

Embed = Callable[[Sequence[str]], list[list[float]]]
Key = tuple[str, str, str]  # route, version, variant


@dataclass
class _Window:
    vectors: deque = field(default_factory=deque)
    total: list[float] = field(default_factory=list)


class EmbeddingDriftSampler:
    """Samples prompts, embeds them on a background thread, keeps a window per series.

    ``embed`` maps texts to vectors (the gateway passes an :class:`~lorafleet.embedding.minilm.Embedder`'s
    ``embed``). ``on_result(result, n)`` is called with ``"dropped"`` (queue full),
    ``"embedded"`` or ``"failed"`` and a count, for the samples counter.
    """

    def __init__(self, embed: Embed, sample_every: int = 10, queue_size: int = 256, batch_size: int = 32,
                 window: int = 200, min_samples: int = 20,
                 on_result: Callable[[str, int], None] | None = None) -> None:
        self.embed = embed
        self.sample_every = sample_every
        self.batch_size = batch_size
        self.window = window
        self.min_samples = min_samples
        self.on_result = on_result or (lambda _result, _n: None)
        self.queue: queue.Queue[tuple[Key, str] | None] = queue.Queue(maxsize=queue_size)
        self.batch_seconds: deque[tuple[int, float]] = deque(maxlen=100)  # (texts, seconds) per batch
        self._seen = 0
        self._windows: dict[Key, _Window] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- request side (event loop): never blocks ---------------------------------------------
    def wants_sample(self) -> bool:
        """Counts one request; True for every ``sample_every``-th."""
        self._seen += 1
        return self._seen % self.sample_every == 0

    def offer(self, route: str, version: str, variant: str, text: str) -> bool:
        """Queue one prompt for embedding; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(((route, version, variant), text))
        except queue.Full:
            self.on_result("dropped", 1)
            return False
        return True

    # -- worker ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lorafleet-embedding-drift", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Embed what is queued, then end the worker (a worker stuck longer than ``timeout_s`` is left
        behind: it is a daemon thread)."""
        if self._thread is None:
            return
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:  # the worker is stuck: drop the backlog so the marker fits
            while True:
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
            self.queue.put_nowait(None)
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.batch_size:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._embed_batch(batch)
                    return
                batch.append(nxt)
            self._embed_batch(batch)

    def _embed_batch(self, batch: list[tuple[Key, str]]) -> None:
        import time

        started = time.perf_counter()
        try:
            vectors = self.embed([text for _key, text in batch])
        except Exception:  # a broken model must not take the gateway down: count and go on
            log.exception("embedding %d sampled prompts failed", len(batch))
            self.on_result("failed", len(batch))
            return
        self.batch_seconds.append((len(batch), time.perf_counter() - started))
        with self._lock:
            for (key, _text), vec in zip(batch, vectors, strict=True):
                self._add(key, vec)
        self.on_result("embedded", len(batch))

    def _add(self, key: Key, vec: list[float]) -> None:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window(total=[0.0] * len(vec))
        w.vectors.append(vec)
        w.total = [t + v for t, v in zip(w.total, vec, strict=True)]
        if len(w.vectors) > self.window:
            old = w.vectors.popleft()
            w.total = [t - v for t, v in zip(w.total, old, strict=True)]

    # -- views -------------------------------------------------------------------------------
    def versions(self) -> set[str]:
        with self._lock:
            return {version for (_r, version, _v) in self._windows}

    def samples(self, route: str, version: str, variant: str) -> int:
        with self._lock:
            w = self._windows.get((route, version, variant))
            return len(w.vectors) if w else 0

    def distances(self, reference: Callable[[str], Sequence[float] | None]) -> dict[Key, float]:
        """{(route, version, variant): cosine distance of the live centroid from ``reference(version)``}
        for every window with at least ``min_samples`` embeddings and a reference centroid."""
        out = {}
        with self._lock:
            items = [(k, list(w.total), len(w.vectors)) for k, w in self._windows.items()]
        for key, total, n in items:
            ref = reference(key[1])
            if n < self.min_samples or not ref or len(ref) != len(total):
                continue
            out[key] = cosine_distance(total, ref)  # the sum points where the mean does
        return out
