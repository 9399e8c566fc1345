"""Live progress of a Ray Train job: a tiny Ray actor the workers write to and the driver polls,
so the progress bar and loss show on the console wherever the workers run."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ProgressState", "make_progress_actor", "ProgressCallback"]


class ProgressState:
    """Held by the actor: latest step, total steps, loss history, restarts seen, where each rank ran."""

    def __init__(self) -> None:
        self.step = 0
        self.total = 0
        self.loss: float | None = None
        self.history: list[tuple[int, float]] = []
        self.attempts = 0
        self.tokens = 0
        self.train_seconds = 0.0
        self.pids: list[int] = []
        self.checkpoints = 0
        self.resumed_from: list[int] = []
        self.timeline: list[tuple[int, int, float]] = []  # (step, tokens seen, step seconds so far)
        self.workers: dict[int, dict[str, Any]] = {}  # rank -> where it (last) ran: node_id, node_ip, pid

    def worker(self, rank: int, node_id: str, node_ip: str, pid: int) -> None:
        self.workers[rank] = {"rank": rank, "node_id": node_id, "node_ip": node_ip, "pid": pid}

    def start(self, pid: int, resumed_step: int) -> None:
        self.attempts += 1
        self.pids.append(pid)
        self.resumed_from.append(resumed_step)
        self.step = resumed_step

    def update(self, step: int, total: int, loss: float | None = None, tokens: int | None = None,
               train_seconds: float | None = None) -> None:
        self.step, self.total = step, total
        if loss is not None:
            self.loss = loss
            self.history.append((step, loss))
        if tokens is not None:
            self.tokens = tokens
            self.timeline.append((step, tokens, train_seconds or 0.0))
        if train_seconds is not None:
            self.train_seconds = train_seconds

    def saved(self) -> None:
        self.checkpoints += 1

    def get(self) -> dict[str, Any]:
        return dict(step=self.step, total=self.total, loss=self.loss, history=list(self.history),
                    attempts=self.attempts, tokens=self.tokens, train_seconds=self.train_seconds,
                    pids=list(self.pids), checkpoints=self.checkpoints,
                    resumed_from=list(self.resumed_from), timeline=list(self.timeline),
                    workers=[self.workers[r] for r in sorted(self.workers)])


def make_progress_actor() -> Any:
    import ray

    return ray.remote(num_cpus=0)(ProgressState).remote()


def ProgressCallback(actor: Any, rank: int) -> Any:  # noqa: N802 - a class factory (transformers is heavy)
    """A transformers TrainerCallback that reports step, loss and tokens/s to the actor (rank 0)."""
    from transformers import TrainerCallback

    class _Cb(TrainerCallback):
        def __init__(self) -> None:
            self.tokens = 0
            self.t0: float | None = None
            self.elapsed = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.t0 is not None:
                self.elapsed += time.perf_counter() - self.t0
            if rank == 0:
                actor.update.remote(state.global_step, state.max_steps, None,
                                    int(state.num_input_tokens_seen or 0), self.elapsed)

        def on_log(self, args, state, control, logs=None, **kw):
            if rank == 0 and logs and "loss" in logs:
                actor.update.remote(state.global_step, state.max_steps, float(logs["loss"]))

    return _Cb()
