"""The shadow queue's byte budget, wired through the runtime: requests past
``scoring.shadow_queue_max_bytes`` are dropped and counted, and the rows waiting are
exported as a gauge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch import ConfigError, build_config
from tunewatch._example import ExampleModel


def _sample(text: str, name: str) -> float | None:
    return next(
        (float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)), None
    )


def test_shadow_jobs_past_the_byte_budget_are_dropped_and_queued_bytes_are_exported(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    x = np.zeros((4, 8), np.float32)  # 128 bytes a request
    extra = {"scoring": {"shadow_queue_max_bytes": 2 * x.nbytes}}
    daemon, _ = make_daemon(tmp_path, trained, extra=extra)
    runtime = daemon.runtime
    try:
        runtime.load(MODEL)  # not started: no worker takes the jobs, which stay queued
        challengers = runtime.model(MODEL).deployment.lineup.challengers
        assert challengers
        for i in range(3):
            runtime.shadow(MODEL, f"r{i}", x, challengers)
        text = runtime.metrics.exposition().decode()
        assert _sample(text, "tunewatch_shadow_queue_bytes ") == 2 * x.nbytes
        dropped = f'tunewatch_shadow_dropped_total{{model="{MODEL}",reason="queue_full"}} '
        assert _sample(text, dropped) == 1
        assert _sample(text, "tunewatch_shadow_queue_depth ") == 2
    finally:
        runtime.close()
        daemon.close()
    assert runtime.queue.queued_bytes == 0


def test_the_shadow_queue_byte_budget_defaults_to_256_mib_and_must_be_positive() -> None:
    assert build_config({}, env={}).scoring.shadow_queue_max_bytes == 256 * 2**20
    with pytest.raises(ConfigError, match="shadow_queue_max_bytes"):
        build_config({"scoring": {"shadow_queue_max_bytes": 0}}, env={})
