"""What a champion's drift and estimate compare with: the traffic part of a retuned
version's reference snapshot, and no snapshot at all when it cannot be read.

A retuning job's snapshot is its training rows: the parent's reference rows first, then
the traffic window it was tuned on (``details["rows"]`` in all, the last
``details["traffic_rows"]`` of them traffic). Compared whole, the pre-drift rows the
parent passed on made the new champion's own regime "drift" at every window."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import positive_proba
from shadow import OnnxModel
from tests.tunewatch.conftest import Clock, feed
from tests.tunewatch.test_evaluation import MODEL, WINDOW, _champion_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import EvaluationRow

PRE_DRIFT, TRAFFIC = 1500, 3000  # the parent's reference rows, then the job's traffic


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": WINDOW,
            "drift": {"consecutive": 2, "cooldown_minutes": 600},
            "decay": {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24},
        },
    )
    yield d
    d.close()


def _retuned_snapshot() -> Reference:
    """A retuned version's snapshot as a job writes it: the parent's pre-drift rows
    (shift 0) first, then the labelled traffic of the new regime (shift 1)."""
    x_old, y_old = example_data(PRE_DRIFT, seed=41, shift=0.0)
    x_new, y_new = example_data(TRAFFIC, seed=42, shift=1.0)
    return Reference(
        features=np.vstack([x_old, x_new]),
        labels=np.concatenate([y_old, y_new]).astype(np.float64),
    )


def _promote(
    d: Daemon, trained: list[ExampleModel], reference: Reference, details: Mapping[str, Any]
) -> int:
    meta = trained[0].metadata
    row = d.registry.register(
        MODEL,
        trained[0].onnx,
        VersionMetadata(
            task=meta.task,
            feature_names=meta.feature_names,
            hyperparameters=meta.hyperparameters,
            dataset_version="retuned",
            parent_version=1,
            details=details,
        ),
        actor="t",
        reference=reference,
    )
    d.store.promote(MODEL, row.version, actor="t", reason="retuned on the new regime")
    return row.version


def _evaluate(d: Daemon) -> dict[str, EvaluationRow]:
    return {r.kind: r for r in d.evaluator.evaluate(MODEL)}


def test_a_retuned_champion_is_not_drifted_on_the_traffic_it_was_tuned_on(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Every window of the regime the champion was tuned on alarmed on every feature, its
    prediction and its label, and a retune followed every cool-down."""
    version = _promote(
        daemon,
        trained,
        _retuned_snapshot(),
        {"rows": PRE_DRIFT + TRAFFIC, "traffic_rows": TRAFFIC},
    )
    clock = Clock()
    daemon.evaluator.clock = clock
    drifts = []
    for w in range(4):
        feed(daemon, clock, w * WINDOW, WINDOW, shift=1.0, seed=300 + w)
        drift = _evaluate(daemon)["drift"]
        assert drift.version == version and drift.status == "ok"
        drifts.append(drift.payload)
    assert [p["alarm"] for p in drifts] == [False] * 4
    # compared with the traffic part alone
    assert {c["n_ref"] for c in drifts[-1]["columns"]} == {TRAFFIC}
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []


def test_the_estimate_s_reference_accuracy_is_that_of_the_traffic_part(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """CBPE is calibrated, and the reference accuracy taken, on the traffic the champion
    was tuned on, not on the pre-drift rows before it."""
    reference = _retuned_snapshot()
    _promote(daemon, trained, reference, {"rows": PRE_DRIFT + TRAFFIC, "traffic_rows": TRAFFIC})
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=300)
    estimate = _evaluate(daemon)["estimate"].payload
    session = OnnxModel.from_bytes(trained[0].onnx)
    p = positive_proba(session.primary(session.run(reference.features)))
    assert reference.labels is not None
    right = (p >= estimate["threshold"]) == (reference.labels >= 0.5)
    assert estimate["reference"] == pytest.approx(float(right[-TRAFFIC:].mean()))
    assert estimate["reference"] != pytest.approx(float(right.mean()))


@pytest.mark.parametrize(
    "details",
    [
        pytest.param({}, id="registered-before-jobs-recorded-row-counts"),
        pytest.param(
            {"rows": PRE_DRIFT + TRAFFIC, "traffic_rows": 50}, id="traffic-below-drift-min-rows"
        ),
        pytest.param({"rows": 1234, "traffic_rows": TRAFFIC}, id="row-count-of-another-snapshot"),
    ],
)
def test_a_snapshot_whose_traffic_part_cannot_be_told_or_is_too_small_is_compared_whole(
    daemon: Daemon, trained: list[ExampleModel], details: dict[str, Any]
) -> None:
    _promote(daemon, trained, _retuned_snapshot(), details)
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=300)
    drift = _evaluate(daemon)["drift"].payload
    assert {c["n_ref"] for c in drift["columns"]} == {PRE_DRIFT + TRAFFIC}


def test_an_imported_retuned_version_is_compared_with_its_traffic_part(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """An import keeps the source's row counts under ``details.imported``; the snapshot
    is the same, its traffic part too."""
    _promote(
        daemon,
        trained,
        _retuned_snapshot(),
        {"imported": {"rows": PRE_DRIFT + TRAFFIC, "traffic_rows": TRAFFIC}},
    )
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=300)
    drift = _evaluate(daemon)["drift"].payload
    assert {c["n_ref"] for c in drift["columns"]} == {TRAFFIC}
    assert not drift["alarm"]


# -- an unreadable snapshot ----------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    else:  # one flipped byte
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["missing", "flipped-byte"])
def test_an_unreadable_snapshot_loses_drift_and_the_estimate_not_the_evaluation(
    daemon: Daemon, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole evaluation raised at every run (decay, labels and telemetry lost with
    drift): the snapshot is now treated as none, said once a run, and read again the
    next run, so a repaired one is used at once."""
    champion = daemon.store.champion(MODEL)
    assert champion is not None
    sha = champion.details["reference_sha256"]
    path = daemon.artefacts.path(sha, ".npz")
    intact = path.read_bytes()
    _damage(path, how)
    clock = Clock()
    daemon.evaluator.clock = clock
    for run in range(2):
        feed(daemon, clock, run * WINDOW, WINDOW, shift=0.0, seed=500 + run)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tunewatch"):
            rows = _evaluate(daemon)
        said = [r for r in caplog.records if sha in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR
        for kind in ("drift", "estimate"):
            assert rows[kind].status == "insufficient_data"
            assert not rows[kind].payload["alarm"]
            assert sha in rows[kind].payload["reason"]
            assert "reference snapshot" in rows[kind].payload["reason"]
        assert set(rows) == {"drift", "decay", "estimate", "labels", "telemetry"}
        assert rows["labels"].payload["coverage"] == 1.0
        assert rows["telemetry"].status == "ok"
        assert rows["telemetry"].payload["versions"]["1"]["n"] > 0
    stored = daemon.store.list_evaluations(MODEL, limit=100)
    assert len(stored) == 10
    path.write_bytes(intact)  # repaired: the failure was not cached
    feed(daemon, clock, 2 * WINDOW, WINDOW, shift=0.0, seed=502)
    rows = _evaluate(daemon)
    assert rows["drift"].status == "ok" and rows["estimate"].status == "ok"
