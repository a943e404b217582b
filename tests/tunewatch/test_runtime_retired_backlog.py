"""A challenger retired while its shadow backlog waits scores none of it: the jobs queued
for it are counted as dropped (reason ``left_lineup``), not scored, and no output is
stored under the retired version. It scored the whole backlog (minutes of CPU under the
CPU share) and its outputs kept arriving after it was retired."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shadow import ShadowResult
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._record_rows import request_record


def _dropped(daemon: Daemon, reason: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(
        "tunewatch_shadow_dropped_total", {"model": MODEL, "reason": reason}
    )


def _retire(daemon: Daemon, version: int) -> None:
    """Retire ``version`` as the HTTP route does: the stage, then the line-up reloaded."""
    daemon.store.set_stage(MODEL, version, "retired", actor="test", reason="too slow")
    assert daemon.runtime.try_load(MODEL) is not None


def test_a_challenger_retired_with_a_queued_backlog_scores_and_records_none_of_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    runtime = daemon.runtime
    try:
        served = runtime.load(MODEL)  # not started: no worker takes the jobs, which stay queued
        x = np.zeros((4, len(served.row.feature_names)), np.float32)
        ids = [f"r{i}" for i in range(3)]
        daemon.store.write_records([request_record(MODEL, i, x) for i in ids], [])
        challengers = served.deployment.lineup.challengers
        assert [c.version for c in challengers] == [2]
        for request_id in ids:
            runtime.shadow(MODEL, request_id, x, challengers)
        assert runtime.queue.depth == 3
        _retire(daemon, 2)
        runtime.recorder.start()
        runtime.queue.start()
        runtime.queue.close()  # waits for the drain of the backlog
        runtime.recorder.close()  # writes what was recorded
        for request_id in ids:
            assert [o.version for o in daemon.store.get_outputs(MODEL, request_id)] == []
        assert _dropped(daemon, "left_lineup") == 3
        assert _dropped(daemon, "queue_full") == 0  # exported at 0, none counted
        assert runtime.queue.depth == 0
    finally:
        runtime.close()
        daemon.close()


def test_a_result_of_a_version_retired_while_it_scored_is_not_recorded(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A drain checks the line-up before it scores; a version retired while the drain
    scored it has its results discarded and counted, not recorded."""
    daemon, _ = make_daemon(tmp_path, trained)
    runtime = daemon.runtime
    try:
        served = runtime.load(MODEL)
        x = np.zeros((2, len(served.row.feature_names)), np.float32)
        daemon.store.write_records([request_record(MODEL, "r1", x)], [])
        runtime.recorder.start()
        _retire(daemon, 2)
        runtime.shadow_results.on_results(
            [
                ShadowResult(MODEL, "r1", 2, np.zeros((2, 1), np.float32), 0.001),
                ShadowResult(MODEL, "r1", 2, None, None, error="RuntimeError: boom"),
            ]
        )
        runtime.recorder.close()
        assert daemon.store.get_outputs(MODEL, "r1") == []
        assert _dropped(daemon, "left_lineup") == 2
    finally:
        runtime.close()
        daemon.close()
