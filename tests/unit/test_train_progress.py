"""The progress state a Ray Train job's workers write to: where each rank ran, the newest attempt winning."""

from __future__ import annotations

from lorafleet.training.progress import ProgressState


def test_progress_state_records_each_ranks_node_latest_attempt_wins():
    state = ProgressState()
    state.worker(1, "node-b", "10.0.0.2", 11)
    state.worker(0, "node-a", "10.0.0.1", 10)
    state.worker(1, "node-c", "10.0.0.3", 12)  # rank 1 restarted elsewhere
    assert state.get()["workers"] == [
        {"rank": 0, "node_id": "node-a", "node_ip": "10.0.0.1", "pid": 10},
        {"rank": 1, "node_id": "node-c", "node_ip": "10.0.0.3", "pid": 12},
    ]
    assert ProgressState().get()["workers"] == []
