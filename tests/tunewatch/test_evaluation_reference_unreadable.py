"""An evaluation whose champion has a reference snapshot that cannot be read is a failed
run, counted as ``tunewatch_evaluations_total{outcome="reference_unreadable"}`` (which
``TunewatchScheduledJobFailing`` reads); the rest of it (decay, labels, telemetry) is
still run and stored. A champion registered without a snapshot is a normal state, not a
failure.

It was counted ``ok``: a damaged snapshot turned drift and the label-free estimate off
for good while every run read as healthy and no shipped rule fired (19 runs, all ``ok``,
on data shifted 2 sd).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import Clock, feed, make_daemon
from tests.tunewatch.test_evaluation import MODEL, WINDOW, _champion_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

UNREADABLE = "reference_unreadable"


def _count(d: Daemon, outcome: str) -> float | None:
    """``tunewatch_evaluations_total`` of ``MODEL`` with ``outcome`` as exported (``None``:
    no such series)."""
    prefix = f'tunewatch_evaluations_total{{model="{MODEL}",outcome="{outcome}"}} '
    for line in d.metrics.exposition().decode().splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "decay": {"window_s": 3600, "maturity_s": 0}},
    )
    d.evaluator.clock = Clock()
    yield d
    d.close()


def _damage_reference(d: Daemon) -> tuple[Path, bytes]:
    """Truncate the champion's stored reference snapshot; its path and intact bytes."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    path = d.artefacts.path(champion.details["reference_sha256"], ".npz")
    intact = path.read_bytes()
    path.write_bytes(intact[:100])
    return path, intact


def test_an_unreadable_reference_counts_each_evaluation_as_failed_not_ok(
    daemon: Daemon,
) -> None:
    path, intact = _damage_reference(daemon)
    clock = daemon.evaluator.clock
    assert isinstance(clock, Clock)
    for run in range(2):
        feed(daemon, clock, run * WINDOW, WINDOW, shift=2.0, seed=700 + run)
        rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
        # the rest of the evaluation is run and stored
        assert set(rows) == {"drift", "decay", "estimate", "labels", "telemetry"}
        assert rows["decay"].id is not None and rows["telemetry"].status == "ok"
        assert rows["drift"].status == "insufficient_data"
        assert "reference snapshot cannot be read" in rows["drift"].payload["reason"]
        assert _count(daemon, UNREADABLE) == run + 1
        assert not _count(daemon, "ok")
    path.write_bytes(intact)  # repaired: read at the next run, which is ok again
    feed(daemon, clock, 2 * WINDOW, WINDOW, shift=0.0, seed=702)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["drift"].status == "ok"
    assert _count(daemon, "ok") == 1 and _count(daemon, UNREADABLE) == 2


def test_a_scheduling_process_exports_the_unreadable_count_at_zero_once_it_serves(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Born at 1 at the first failure, the series hid that failure from ``increase()``:
    the three-failures-an-hour rule fired at the fourth. A process that runs the
    scheduler knows the champion it serves before any scheduled evaluation runs."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    try:
        assert _count(daemon, UNREADABLE) is None
        daemon.runtime.load(MODEL)
        assert _count(daemon, UNREADABLE) == 0
        _damage_reference(daemon)
        clock = Clock()
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=0.0, seed=710)
        daemon.evaluator.evaluate(MODEL)
        assert _count(daemon, UNREADABLE) == 1
    finally:
        daemon.close()


def test_a_replica_running_no_scheduler_exports_no_unreadable_count_before_evaluating(
    daemon: Daemon,
) -> None:
    """Its evaluations are asked for (``POST /evaluate``), never scheduled: as with the
    scheduled jobs' failures, it exports none up front."""
    daemon.runtime.load(MODEL)
    assert _count(daemon, UNREADABLE) is None


def test_a_champion_registered_without_a_reference_is_no_failure(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """No snapshot is a normal state (a version registered by hand without one): drift
    and the estimate are insufficient data, the run is ``ok``."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "decay": {"window_s": 3600, "maturity_s": 0}},
    )
    try:
        meta = trained[0].metadata
        row = d.registry.register(MODEL, trained[0].onnx, meta, actor="t")  # no reference
        d.store.promote(MODEL, row.version, actor="t", reason="registered without a reference")
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=0.0, seed=720)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        assert rows["drift"].payload["reason"] == "no reference snapshot"
        assert _count(d, "ok") == 1
        assert not _count(d, UNREADABLE)
    finally:
        d.close()
