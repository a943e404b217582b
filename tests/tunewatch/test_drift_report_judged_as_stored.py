"""The drift report of a stored verdict is judged as the verdict was, whatever the config
says when the report is first asked for: its dataset share threshold, its label window
and its sample size are the verdict's, recorded with it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import LABEL, judged_as, judged_frames
from tunewatch._example import ExampleModel
from tunewatch.store import EvaluationRow

DATASET_VERDICT = re.compile(r"Dataset [Dd]rift is (?:NOT )?detected")


def _daemon(tmp_path: Path, store_url: str, evaluation: dict[str, object]) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "store": {"url": store_url},
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": evaluation}],
        },
        env={},
    )
    return Daemon(config, env={})


def _register(d: Daemon, trained: list[ExampleModel]) -> None:
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )


def _frames(d: Daemon, drift: EvaluationRow) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference and window the report of ``drift`` tests, under ``d``'s config."""
    model = d.store.get_model(MODEL)
    assert drift.version is not None
    champion = d.store.get_version(MODEL, drift.version)
    evaluation = d.config.model_or_default(MODEL, model.task).evaluation
    columns, _ = judged_as(drift.payload, evaluation.drift)
    baseline = d.evaluator.report_baseline(champion, model)
    return judged_frames(d.store, model, evaluation, drift, baseline, columns)


def test_drift_report_of_an_old_verdict_ignores_a_later_share_threshold(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Two features of nine shifted: 0.44 of the columns drifted, no dataset drift under
    the share threshold of 0.5. The threshold was lowered to 0.2 before the verdict's
    report was first asked for: the report said "Dataset Drift is detected" of a verdict
    that found none, and was stored so for good."""
    d = _daemon(tmp_path, store_url, {"window_rows": 400})
    try:
        _register(d, trained)
        clock = Clock()
        d.evaluator.clock = clock

        def shift_two(x: np.ndarray) -> None:
            x[:, :2] += 1.5

        feed(d, clock, 0, 400, shift=0.0, seed=5, edit=shift_two)
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    finally:
        d.close()
    assert drift.status == "ok" and not drift.payload["alarm"]
    assert 0.2 < drift.payload["drifted_share"] < 0.5  # the scenario: between the thresholds
    later = _daemon(tmp_path, store_url, {"window_rows": 400, "drift": {"share_threshold": 0.2}})
    try:
        html = later.evaluator.drift_report(MODEL, drift.id)
    finally:
        later.close()
    assert set(DATASET_VERDICT.findall(html)) == {"Dataset Drift is NOT detected"}


def test_drift_report_of_an_old_verdict_ignores_a_later_label_window_and_sample_size(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """The verdict tested a sample of 200 rows, its labels those of the newest 400
    requests at least an hour old. `window_rows`, `decay.maturity_s` and the sample size
    changed before its report was asked for: the report tested 300 rows, and the labels
    of other requests (those of the last minutes among them). It tests what the verdict
    did; and a `drift.min_rows` now above the verdict's sample size does not refuse it."""
    d = _daemon(
        tmp_path,
        store_url,
        {"window_rows": 400, "decay": {"maturity_s": 3600}, "drift": {"sample_size": 200}},
    )
    try:
        _register(d, trained)
        feed(d, Clock(), 0, 600, shift=0.0, seed=6)  # six hours ago, labelled
        recent = Clock(datetime.now(UTC) - timedelta(minutes=10))
        feed(d, recent, 600, 200, shift=0.0, seed=7)  # labelled, not an hour old
        run = datetime.now(UTC)  # after every label
        d.evaluator.clock = lambda: run
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        judged = _frames(d, drift)
    finally:
        d.close()
    [label] = [c for c in drift.payload["columns"] if c["column"] == LABEL]
    assert label["status"] == "ok"
    assert drift.payload["label_window"]["n"] == 400  # r200-r599
    later = _daemon(
        tmp_path,
        store_url,
        {
            "window_rows": 300,
            "decay": {"maturity_s": 60},
            "drift": {"min_rows": 250, "sample_size": 300},
        },
    )
    try:
        reference, current = _frames(later, drift)
        assert len(current) == 200
        assert int(current[LABEL].notna().sum()) == label["n_cur"]
        pd.testing.assert_frame_equal(reference, judged[0])
        pd.testing.assert_frame_equal(current, judged[1])
        later.evaluator.drift_report(MODEL, drift.id)
        [report] = later.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert report.payload["evaluation"] == drift.id
        assert report.payload["drifted_columns"] == sorted(drift.payload["drifted_columns"])
    finally:
        later.close()
