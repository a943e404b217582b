"""The reference side of a drift report is rebuilt from the champion's cached baseline,
which keeps no reference rows: each sampled column from the profile's sample, each
discrete or categorical column from its counts (the full column's values, in another
order, which no test reads), and only a continuous column tested on its full values
from the snapshot, read again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import LABEL, judged_as, judged_frames
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch.store import EvaluationRow

WINDOW = 300
ROWS = 2_000


@pytest.fixture
def judged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, Reference]]:
    """A champion whose reference has a discrete x0 (three values) and a missing x1 value
    in every tenth row, and one drift verdict of a window of ``WINDOW`` labelled rows."""
    d = Daemon(
        build_config(
            {
                "data_dir": str(tmp_path),
                "scheduler": {"enabled": False},
                "models": [
                    {
                        "name": MODEL,
                        "task": "binary",
                        "evaluation": {"window_rows": WINDOW, "decay": {"maturity_s": 60}},
                    }
                ],
            },
            env={},
        ),
        env={},
    )
    try:
        x, y = example_data(ROWS, seed=3)
        x[:, 0] = np.round(np.clip(x[:, 0], -1, 1))
        x[::10, 1] = np.nan
        reference = Reference(features=x, labels=y.astype(np.float64))
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

        def discrete(rows: np.ndarray) -> None:
            rows[:, 0] = np.round(np.clip(rows[:, 0], -1, 1))

        feed(d, clock, 0, WINDOW, shift=0.0, seed=4, edit=discrete)
        d.evaluator.clock = lambda: datetime.now(UTC)  # after every label arrived
        yield d, reference
    finally:
        d.close()


def _drift(d: Daemon) -> EvaluationRow:
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    assert drift.status == "ok"
    return drift


def test_counted_columns_hold_the_full_reference_s_values(
    judged: tuple[Daemon, Reference],
) -> None:
    d, reference = judged
    drift = _drift(d)
    methods = {c["column"]: c["method"] for c in drift.payload["columns"]}
    assert methods["x0"] not in ("ks", "jensenshannon")  # a discrete column's test
    assert methods[LABEL] in ("chisquare", "z")
    assert not drift.payload["insufficient"]
    model = d.store.get_model(MODEL)
    champion = d.store.get_version(MODEL, 1)
    columns, _ = judged_as(
        drift.payload, d.config.model_or_default(MODEL, "binary").evaluation.drift
    )
    baseline = d.evaluator.report_baseline(champion, model)
    frame, _ = judged_frames(
        d.store,
        model,
        d.config.model_or_default(MODEL, "binary").evaluation,
        drift,
        baseline,
        columns,
    )
    assert len(frame) == ROWS
    for name, values in (("x0", reference.features[:, 0]), (LABEL, reference.labels)):
        assert values is not None
        np.testing.assert_array_equal(
            np.sort(frame[name].dropna().to_numpy()), np.sort(values.astype(np.float64))
        )
    # a sampled column: the profile's sample (all of it: under 10,000 values), missing
    # values left out as its test leaves them out
    x1 = reference.features[:, 1].astype(np.float64)
    np.testing.assert_array_equal(frame["x1"].dropna().to_numpy(), np.sort(x1[~np.isnan(x1)]))


def test_a_report_of_sampled_and_counted_columns_needs_no_snapshot(
    judged: tuple[Daemon, Reference],
) -> None:
    """Built from the baseline: the report of a verdict none of whose columns is tested on
    its full values is built with the snapshot gone."""
    d, _ = judged
    drift = _drift(d)
    methods = {c["column"]: c["method"] for c in drift.payload["columns"]}
    assert not {"wasserstein", "psi"} & set(methods.values()), methods
    champion = d.store.get_version(MODEL, 1)
    d.artefacts.path(champion.details["reference_sha256"], ".npz").unlink()
    d.evaluator.drift_report(MODEL, drift.id)
    [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
    assert report.payload["evaluation"] == drift.id
    assert report.payload["drifted_columns"] == sorted(drift.payload["drifted_columns"])
