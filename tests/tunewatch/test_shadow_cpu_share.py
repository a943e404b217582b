"""The shadow CPU share, wired through the runtime: shed requests are counted by reason."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel


def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _dropped(text: str, reason: str) -> float:
    prefix = f'tunewatch_shadow_dropped_total{{model="{MODEL}",reason="{reason}"}} '
    return next(
        (float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0
    )


def test_requests_past_the_cpu_share_are_shed_counted_and_not_scored(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    # A 0.01 % share: after one drain the challengers rest for a second or more.
    daemon, _ = make_daemon(tmp_path, trained, extra={"scoring": {"shadow_cpu_share": 0.0001}})
    runtime = daemon.runtime
    runtime.start()
    try:
        challengers = runtime.model(MODEL).deployment.lineup.challengers
        assert challengers
        x = np.zeros((1, 8), np.float32)
        runtime.shadow(MODEL, "first", x, challengers)
        _until(lambda: runtime.queue.processed == 1)
        _until(lambda: runtime.queue.resting)
        held = runtime.queue.max_batch
        for i in range(held + 10):
            runtime.shadow(MODEL, f"r{i}", x, challengers)
        text = runtime.metrics.exposition().decode()
        assert _dropped(text, "cpu_share") == 10
        assert _dropped(text, "queue_full") == 0
        cpu = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("tunewatch_shadow_cpu_seconds_total ")
        )
        assert 0 < cpu == runtime.queue.cpu_seconds
    finally:
        runtime.close()
    store = daemon.store
    assert any(o.role == "challenger" for o in store.get_outputs(MODEL, f"r{held - 1}"))
    assert not any(o.role == "challenger" for o in store.get_outputs(MODEL, f"r{held}"))
    daemon.close()
