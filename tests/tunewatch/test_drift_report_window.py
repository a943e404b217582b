"""The drift report tests what its verdict tested: the labels that had arrived by the
run, and the verdict's samples of the reference and of the window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import LABEL, judged_as, judged_frames
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch.store import EvaluationRow, LabelItem
from tunewatch.store._schema import evaluations

WINDOW = 600
# the reference profile keeps at most 10,000 values of a column: a larger reference is
# sampled, as is a window longer than `drift.sample_size`
REFERENCE_ROWS = 12_000
SAMPLED_WINDOW = 1_000
SAMPLE_SIZE = 200


def _daemon(tmp_path: Path, evaluation: dict[str, object]) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": evaluation}],
        },
        env={},
    )
    return Daemon(config, env={})


def _report(d: Daemon, drift: EvaluationRow) -> EvaluationRow:
    d.evaluator.drift_report(MODEL, drift.id)
    [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
    assert report.payload["evaluation"] == drift.id
    return report


def _frames(d: Daemon, drift: EvaluationRow) -> tuple[object, object]:
    model = d.store.get_model(MODEL)
    assert drift.version is not None
    champion = d.store.get_version(MODEL, drift.version)
    evaluation = d.config.model_or_default(MODEL, model.task).evaluation
    columns, _ = judged_as(drift.payload, evaluation.drift)
    baseline = d.evaluator.report_baseline(champion, model)
    return judged_frames(d.store, model, evaluation, drift, baseline, columns)


@pytest.fixture
def unlabelled(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """A champion with a reference and ``WINDOW`` requests six hours old (matured by any
    run), no label yet."""
    d = _daemon(
        tmp_path,
        {"window_rows": WINDOW, "decay": {"window_s": 3600, "maturity_s": 60}},
    )
    try:
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=trained[0].reference,
        )
        feed(d, Clock(), 0, WINDOW, shift=0.0, seed=4, labels=False)
        yield d
    finally:
        d.close()


def _verdict_on_half_the_labels(d: Daemon) -> EvaluationRow:
    """A drift verdict on the window with every other request labelled (true outcomes),
    its label tested and not drifted."""
    _, y = example_data(WINDOW, seed=4, shift=0.0)
    d.store.add_labels(
        MODEL, [LabelItem(request_id=f"r{i}", value=float(y[i])) for i in range(0, WINDOW, 2)]
    )
    # labels are stamped with the real time: the run comes after the first half's
    run = datetime.now(UTC)
    d.evaluator.clock = lambda: run
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    [label] = [c for c in drift.payload["columns"] if c["column"] == LABEL]
    assert label["status"] == "ok" and label["n_cur"] == WINDOW // 2
    assert not label["drifted"]
    return drift


def _label_the_rest_positive(d: Daemon) -> None:
    d.store.add_labels(
        MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(1, WINDOW, 2)]
    )


def test_labels_that_arrive_after_the_run_are_not_in_its_report(unlabelled: Daemon) -> None:
    """The report read the verdict's requests' labels as they stood at its first request:
    the slower outcomes that came after the run (every one positive) were label drift in
    the stored report of a verdict that tested half the labels and found none."""
    d = unlabelled
    drift = _verdict_on_half_the_labels(d)
    _label_the_rest_positive(d)
    report = _report(d, drift)
    assert LABEL not in report.payload["drifted_columns"]
    assert report.payload["drifted_columns"] == sorted(drift.payload["drifted_columns"])
    _, current = _frames(d, drift)  # the very labels the verdict tested
    assert int(current[LABEL].notna().sum()) == WINDOW // 2  # type: ignore[index]


def test_the_newest_label_read_is_recorded_as_a_utc_time(unlabelled: Daemon) -> None:
    """`label_window.labels_through` was the one time of the API's JSON in epoch seconds
    (1796597244.592001), beside `first_request_at` and `last_request_at` in RFC 3339."""
    judged = _verdict_on_half_the_labels(unlabelled).payload["label_window"]
    through = datetime.fromisoformat(judged["labels_through"])
    assert through.utcoffset() == timedelta(0)
    for sibling in ("first_request_at", "last_request_at", "labels_through"):
        assert judged[sibling].endswith("+00:00")


def test_a_verdict_that_recorded_its_newest_label_in_epoch_seconds_is_reported_by_it(
    unlabelled: Daemon,
) -> None:
    """Verdicts stored before `labels_through` was a UTC time hold epoch seconds: their
    report still leaves out the labels that arrived after the run."""
    d = unlabelled
    drift = _verdict_on_half_the_labels(d)
    judged = dict(drift.payload["label_window"])
    judged["labels_through"] = datetime.fromisoformat(judged["labels_through"]).timestamp()
    payload = {**drift.payload, "label_window": judged}
    with d.store.engine.begin() as conn:
        conn.execute(
            evaluations.update().where(evaluations.c.id == drift.id).values(payload=payload)
        )
    [stored] = [
        r for r in d.store.list_evaluations(MODEL, kind="drift", limit=5) if r.id == drift.id
    ]
    assert isinstance(stored.payload["label_window"]["labels_through"], float)
    _label_the_rest_positive(d)
    report = _report(d, stored)
    assert LABEL not in report.payload["drifted_columns"]
    _, current = _frames(d, stored)
    assert int(current[LABEL].notna().sum()) == WINDOW // 2  # type: ignore[index]


def test_labels_that_arrive_while_the_run_reads_are_in_its_report(unlabelled: Daemon) -> None:
    """A run takes its time (``now``) first and reads the label window later, after the
    window and a first baseline: labels that arrived in between were in the verdict's test
    and out of its report. The verdict records the newest label it read, and the report
    tests the labels that had arrived by then."""
    d = unlabelled
    run = datetime.now(UTC)  # the run's time, taken before these labels arrive
    _, y = example_data(WINDOW, seed=4, shift=0.0)
    d.store.add_labels(
        MODEL, [LabelItem(request_id=f"r{i}", value=float(y[i])) for i in range(WINDOW)]
    )
    d.evaluator.clock = lambda: run
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    [label] = [c for c in drift.payload["columns"] if c["column"] == LABEL]
    assert label["status"] == "ok" and label["n_cur"] == WINDOW
    _, current = _frames(d, drift)
    assert int(current[LABEL].notna().sum()) == WINDOW  # type: ignore[index]


@dataclass(frozen=True)
class _Sampled:
    daemon: Daemon
    drift: EvaluationRow


@pytest.fixture(scope="module")
def sampled(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Sampled]:
    """A verdict that tested samples of both sides: a reference of 12,000 rows (the
    profile keeps 10,000 values a column) and a window of 1,000 rows with x0 shifted by
    0.12 standard deviations, of which `drift.sample_size` = 200 are tested."""
    d = _daemon(
        tmp_path_factory.mktemp("sampled"),
        {"window_rows": SAMPLED_WINDOW, "drift": {"sample_size": SAMPLE_SIZE}},
    )
    features, labels = example_data(REFERENCE_ROWS, seed=1)
    reference = Reference(features=features, labels=labels.astype(np.float64), scores=None)
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=reference,
    )
    sd = float(features[:, 0].std())

    def shift_x0(x: np.ndarray) -> None:
        x[:, 0] += 0.12 * sd

    clock = Clock()
    d.evaluator.clock = clock
    feed(d, clock, 0, SAMPLED_WINDOW, shift=0.0, seed=2, edit=shift_x0, labels=False)
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    try:
        yield _Sampled(d, drift)
    finally:
        d.close()


def test_the_report_tests_the_reference_and_window_samples_the_verdict_tested(
    sampled: _Sampled,
) -> None:
    """Each KS statistic on the report's frames is the verdict's: the same 10,000
    reference values and the same 200 of the window's rows."""
    reference, current = _frames(sampled.daemon, sampled.drift)
    assert len(current) == SAMPLE_SIZE  # type: ignore[arg-type]
    ks = [c for c in sampled.drift.payload["columns"] if c["method"] == "ks"]
    assert {c["column"] for c in ks} >= {"x0", "x1", "__prediction__"}
    for column in ks:
        name = column["column"]
        ref = reference[name].dropna().to_numpy()  # type: ignore[index]
        cur = current[name].dropna().to_numpy()  # type: ignore[index]
        assert ref.size == min(column["n_ref"], 10_000) and cur.size == SAMPLE_SIZE, name
        d = stats.ks_2samp(ref, cur).statistic
        assert d == pytest.approx(column["statistic"], abs=1e-12), name


def test_the_report_calls_drifted_the_columns_its_sampled_verdict_did(
    sampled: _Sampled,
) -> None:
    """Tested on all 12,000 reference rows and all 1,000 of the window's, the report
    disagreed with its verdict on the prediction column."""
    drifted = sampled.drift.payload["drifted_columns"]
    assert "x0" in drifted  # the scenario: the shift is seen in the samples
    report = _report(sampled.daemon, sampled.drift)
    assert report.payload["drifted_columns"] == sorted(drifted)


def test_a_wasserstein_column_s_report_is_on_the_full_reference_the_verdict_scales_by(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The verdict measures the profile's sample's distance in the full column's standard
    deviations; evidently divides by its reference's. Given the sample, which missed the
    column's one large value, the report's scale shrank eighteen times and it called x0
    drifted at a distance the verdict found 0.02."""
    d = _daemon(tmp_path, {"window_rows": 2000})
    try:
        features, labels = example_data(REFERENCE_ROWS, seed=1)
        features[5, 0] = 2000.0  # one outlier, which the profile's sample misses
        reference = Reference(features=features, labels=labels.astype(np.float64), scores=None)
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=reference,
        )
        clock = Clock()
        d.evaluator.clock = clock

        def shift(x: np.ndarray) -> None:
            x[:, 0] += 0.4

        feed(d, clock, 0, 2000, shift=0.0, seed=2, edit=shift, labels=False)
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        [x0] = [c for c in drift.payload["columns"] if c["column"] == "x0"]
        assert x0["method"] == "wasserstein" and not x0["drifted"]
        ref, cur = _frames(d, drift)
        r = ref["x0"].dropna().to_numpy()  # type: ignore[index]
        c = cur["x0"].dropna().to_numpy()  # type: ignore[index]
        assert r.size == REFERENCE_ROWS
        # as evidently measures it: the report's verdict is the stored one
        assert stats.wasserstein_distance(r, c) / max(float(np.std(r)), 1e-3) < x0["threshold"]
    finally:
        d.close()
