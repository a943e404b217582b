"""A tuned version's reference snapshot holds the whole traffic window it was tuned on,
not only its labelled part.

Labels often come back for a selected part of the traffic only (a lender observes
repayment only for the applications it approved). A job trains on the labelled rows, but
its snapshot's traffic part is what the version's drift compares with: holding only those
rows, the tuned champion saw traffic that never changed drift in every window (its
features and its prediction), and a drift event queued a retune every cool-down."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from retune.cv import dataset_version
from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Clock, feed
from tests.tunewatch.one_trial_tuning import one_trial_daemon
from tunewatch._daemon import Daemon
from tunewatch._errors import RegistrationError
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch._report import build_report
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_reference import tuned_reference
from tunewatch._tuning_window import TuningWindow, training_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import JobRow, LabelItem, ModelRow, VersionRow

WINDOW = 1000  # an evaluation window's rows
TUNING_ROWS = 3 * WINDOW  # a job's window: the three windows before it


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = one_trial_daemon(
        tmp_path,
        trained,
        window_rows=TUNING_ROWS,
        evaluation={"window_rows": WINDOW, "drift": {"consecutive": 2, "dataset_rule": "fdr"}},
    )
    yield d
    d.close()


def _runner(d: Daemon) -> TuningJobRunner:
    return TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
    )


def _selective(
    d: Daemon, trained: list[ExampleModel], clock: Clock, start: int, n: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` requests of the unchanged example traffic answered by the champion, and a
    label for the approved ones only: those a fixed scorecard (v1's model) gives a
    probability of default below 0.5, about half. Returns their features and their labels
    as the store holds them (NaN: none came back)."""
    feed(d, clock, start, n, shift=0.0, seed=seed, labels=False)
    x, y = example_data(n, seed=seed, shift=0.0)
    scorecard = OnnxModel.from_bytes(trained[0].onnx)
    approved = scorecard.primary(scorecard.run(x))[:, 1] < 0.5
    d.store.add_labels(
        MODEL,
        [
            LabelItem(request_id=f"r{start + i}", value=float(y[i]))
            for i in np.flatnonzero(approved)
        ],
    )
    return x.astype(np.float32), np.where(approved, y.astype(np.float64), np.nan)


def _drift_alarm(d: Daemon, clock: Clock) -> tuple[int, bool, list[str]]:
    d.evaluator.clock = clock
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    assert drift.status == "ok" and drift.version is not None
    return drift.version, bool(drift.payload["alarm"]), list(drift.payload["drifted_columns"])


def _tune(d: Daemon) -> VersionRow:
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "scheduled refresh"})
    assert outcome.job_id is not None
    job = _runner(d).run(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None, job.error
    return d.store.get_version(MODEL, job.result["version"])


def _snapshot(d: Daemon, version: VersionRow) -> Reference:
    return Reference.from_bytes(d.artefacts.get(version.details["reference_sha256"], ".npz"))


def test_a_tuned_champion_does_not_see_unchanged_selectively_labelled_traffic_drift(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The hand-registered v1 alarmed in no window; the tuned v2, whose reference was the
    approved half of the same traffic, alarmed in every one (x0, x1 and its prediction)
    and a drift event fired."""
    clock = Clock()
    alarms: dict[int, list[bool]] = {}
    for w in range(3):
        _selective(daemon, trained, clock, w * WINDOW, WINDOW, seed=10 + w)
        version, alarm, _ = _drift_alarm(daemon, clock)
        alarms.setdefault(version, []).append(alarm)
    v2 = _tune(daemon)
    daemon.store.promote(MODEL, v2.version, actor="t", reason="tuned")
    drifted: list[list[str]] = []
    for w in range(3, 6):
        _selective(daemon, trained, clock, w * WINDOW, WINDOW, seed=10 + w)
        version, alarm, columns = _drift_alarm(daemon, clock)
        alarms.setdefault(version, []).append(alarm)
        drifted.append(columns)
    assert sorted(alarms) == [1, v2.version]
    assert sum(alarms[v2.version]) <= sum(alarms[1]), (alarms, drifted)
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []


def test_a_tuned_snapshot_holds_every_traffic_row_and_trains_on_the_labelled_ones(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The snapshot's traffic part (its last ``traffic_rows``) is the job's whole window,
    in the order received, with NaN for the labels that had not come back; the job still
    trained on the labelled rows only (its dataset is theirs), and every row has a
    held-out score (the unlabelled ones the winner's: it did not train on them)."""
    clock = Clock()
    parts = [_selective(daemon, trained, clock, w * WINDOW, WINDOW, seed=10 + w) for w in range(3)]
    traffic = np.vstack([x for x, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    labelled = ~np.isnan(labels)
    assert 0 < labelled.sum() < TUNING_ROWS  # selective: about half
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "scheduled refresh"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    v1 = daemon.store.champion(MODEL)
    x, y, n_traffic = training_window(daemon.store, daemon.artefacts, model, cfg, job, parent=v1)
    assert n_traffic == int(labelled.sum())
    done = _runner(daemon).run(job.id)
    assert done.status == "succeeded" and done.result is not None, done.error
    v2 = daemon.store.get_version(MODEL, done.result["version"])
    snapshot = _snapshot(daemon, v2)
    inherited = x.shape[0] - n_traffic  # v1's reference rows, all labelled
    assert v2.details["traffic_rows"] == TUNING_ROWS
    assert v2.details["rows"] == snapshot.features.shape[0] == inherited + TUNING_ROWS
    assert (v2.details["trained_rows"], v2.details["trained_traffic_rows"]) == (
        x.shape[0],
        n_traffic,
    )
    np.testing.assert_array_equal(snapshot.features[inherited:], traffic)
    assert snapshot.labels is not None
    np.testing.assert_array_equal(snapshot.labels[inherited:], labels)  # NaN where unlabelled
    # the rows with a label are the rows trained on, in order
    trained_on = ~np.isnan(snapshot.labels)
    np.testing.assert_array_equal(snapshot.features[trained_on], x)
    np.testing.assert_array_equal(snapshot.labels[trained_on], y)
    assert v2.dataset_version == dataset_version(x, y)
    assert snapshot.scores is not None and np.isfinite(snapshot.scores).all()
    assert snapshot.format_version == Reference.FORMAT_VERSION == 2
    # the report tells the window apart from what was trained on
    md = build_report(daemon.store, daemon.config, MODEL, v2.version).markdown()
    assert f"- **of which traffic**: {TUNING_ROWS}" in md
    assert f"- **trained on**: {x.shape[0]}" in md
    assert f"- **of which labelled traffic**: {n_traffic}" in md


def test_the_next_generation_takes_only_the_labelled_rows_it_does_not_read_again(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A tuned parent's traffic part now holds unlabelled rows too: the next job's window
    reads the newest of them again, so it takes only the labelled rows before those,
    none twice and none without a label."""
    clock = Clock()
    for w in range(3):
        _selective(daemon, trained, clock, w * WINDOW, WINDOW, seed=10 + w)
    v2 = _tune(daemon)
    daemon.store.promote(MODEL, v2.version, actor="t", reason="tuned")
    parent = _snapshot(daemon, v2)
    assert parent.labels is not None
    new_x, new_y = _selective(daemon, trained, clock, 3 * WINDOW, 500, seed=20)
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "again"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    x, y, n_traffic = training_window(daemon.store, daemon.artefacts, model, cfg, job, parent=v2)
    # the window: v2's newest 2500 traffic rows again, then the 500 new ones
    first_500 = slice(parent.features.shape[0] - TUNING_ROWS, parent.features.shape[0] - 2500)
    taken = ~np.isnan(parent.labels[first_500])
    np.testing.assert_array_equal(x[: x.shape[0] - n_traffic], parent.features[first_500][taken])
    np.testing.assert_array_equal(y[: x.shape[0] - n_traffic], parent.labels[first_500][taken])
    assert not np.isnan(y.astype(np.float64)).any()
    rows = {r.tobytes() for r in x}
    assert len(rows) == x.shape[0]  # no row twice
    assert n_traffic == int((~np.isnan(parent.labels[-2500:])).sum() + (~np.isnan(new_y)).sum())
    assert {r.tobytes() for r in new_x[~np.isnan(new_y)]} <= rows


def test_a_format_1_tuned_snapshot_still_reads_its_traffic_part_as_its_labelled_rows(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A snapshot a job wrote before format 2 held only the labelled traffic: the next job
    reads it as it did, its window's labelled rows being that part's newest."""
    clock = Clock()
    parts = [_selective(daemon, trained, clock, w * WINDOW, WINDOW, seed=10 + w) for w in range(3)]
    traffic = np.vstack([x for x, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    labelled = ~np.isnan(labels)
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "before format 2"})
    assert outcome.job_id is not None
    old = daemon.store.get_job(outcome.job_id)
    daemon.store.cancel_job(old.id, actor="t", reason="stands for a job run before")
    n = int(labelled.sum())
    meta = trained[1].metadata
    v2 = daemon.registry.register(
        MODEL,
        trained[1].onnx,
        VersionMetadata(
            task=meta.task,
            feature_names=meta.feature_names,
            hyperparameters=meta.hyperparameters,
            dataset_version="format-1",
            parent_version=1,
            details={"job": old.id, "rows": n, "traffic_rows": n},
        ),
        actor=f"job:{old.id}",
        reference=Reference(features=traffic[labelled], labels=labels[labelled], format_version=1),
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="tuned")
    stored = _snapshot(daemon, v2)
    assert stored.format_version == 1  # registered as it was read
    _selective(daemon, trained, clock, 3 * WINDOW, 500, seed=20)
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "again"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    x, _, n_traffic = training_window(daemon.store, daemon.artefacts, model, cfg, job, parent=v2)
    first_500 = slice(0, 500)
    expected = traffic[first_500][labelled[first_500]]
    np.testing.assert_array_equal(x[: x.shape[0] - n_traffic], expected)
    assert len({r.tobytes() for r in x}) == x.shape[0]  # no row twice


def test_a_reference_keeps_the_format_it_was_read_in_and_refuses_a_newer_one() -> None:
    old = Reference(features=np.ones((3, 2)), labels=np.array([0.0, np.nan, 1.0]), format_version=1)
    assert Reference.from_bytes(old.to_bytes()).format_version == 1
    new = Reference(features=np.ones((3, 2)))
    assert Reference.from_bytes(new.to_bytes()).format_version == Reference.FORMAT_VERSION
    with pytest.raises(ValueError, match="format_version"):
        Reference(features=np.ones((3, 2)), format_version=Reference.FORMAT_VERSION + 1)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format_version=np.array(Reference.FORMAT_VERSION + 1),
        features=np.ones((3, 2), np.float32),
    )
    with pytest.raises(RegistrationError, match="newer than this tunewatch reads"):
        Reference.from_bytes(buffer.getvalue())


def test_a_multiclass_window_missing_a_class_keeps_every_column_of_the_candidate() -> None:
    """Out-of-fold scores have a column per class up to the window's largest; the
    candidate answers as many as the version it replaces. The scores of the rows it did
    not train on are its own, so the trained rows' are widened with the class no fold
    predicted (probability 0), not the candidate's cut."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    x, y = example_data(300, seed=5)
    classes = (y + (x[:, 0] > 1.0)).astype(np.int64)  # 0, 1, 2
    proto = convert_sklearn(
        LogisticRegression().fit(x, classes),
        initial_types=[("input", FloatTensorType([None, 8]))],
        options={"zipmap": False},
    )
    traffic = x[:6].astype(np.float32)
    trained = np.array([True, False, True, True, False, True])
    window = TuningWindow(
        x=traffic[trained],
        y=np.array([0, 1, 1, 0], dtype=np.int64),  # no class 2
        n_traffic=4,
        traffic=traffic,
        trained=trained,
        through=None,
    )
    oof = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    now = datetime.now(UTC)
    model = ModelRow(
        name=MODEL,
        task="multiclass",
        feature_names=tuple(f"x{i}" for i in range(8)),
        regulated=False,
        created_at=now,
    )
    job = JobRow(
        id=7, model=MODEL, kind="retune", status="running", trigger={}, dedupe_key=None,
        spec={}, progress={}, result=None, error=None, worker="t", created_at=now,
        started_at=now, heartbeat_at=now, finished_at=None,
    )  # fmt: skip
    reference = tuned_reference(window, oof, proto.SerializeToString(), model=model, job=job)
    assert reference.scores is not None and reference.labels is not None
    np.testing.assert_array_equal(reference.features, traffic)
    np.testing.assert_array_equal(reference.labels, [0, np.nan, 1, 1, np.nan, 0])
    np.testing.assert_array_equal(reference.scores[trained], np.pad(oof, ((0, 0), (0, 1))))
    session = OnnxModel.from_bytes(proto.SerializeToString())
    np.testing.assert_allclose(
        reference.scores[~trained], session.primary(session.run(traffic[~trained]))
    )
    reference.check(8)
    reference.check_labels("multiclass", classes=3)
    reference.check_probabilities("multiclass", tolerance=1e-4, row_sum_tolerance=1e-4)
