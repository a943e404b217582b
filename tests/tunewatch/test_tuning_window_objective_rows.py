"""A retune's training window leaves out the rows its objective cannot score whatever the
prediction, as monitoring and the comparisons do: under `mape` a few labels of 0 (which
the labels API accepts) made every trial fail on its first fold ("MAPE is undefined for
zero labels"), so no retune of the model could succeed while they were in the window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.regression_window import (
    MODEL,
    N,
    regression_daemon,
    serve_labelled,
    window_of,
)
from tunewatch._tuning import TuningJobRunner

#: the traffic requests, and the champion's reference rows, whose label is 0
TRAFFIC_ZEROS = (3, 50, 120)
REFERENCE_ZEROS = (0, 7)


def test_a_mape_window_with_zero_labels_leaves_them_out_and_tunes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuning = {"max_trials": 2, "cv_folds": 2, "patience": None, "wall_time_s": 120, "min_rows": 100}
    d = regression_daemon(tmp_path, "mape", tuning)
    try:
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2 * N, 4)).astype(np.float32)
        y = np.abs(2.0 * x[:, 0] - x[:, 1]) + 1.0 + rng.normal(scale=0.1, size=2 * N)
        y[N + np.asarray(TRAFFIC_ZEROS)] = 0.0
        y[np.asarray(REFERENCE_ZEROS)] = 0.0
        serve_labelled(d, x, y)

        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        window_x, window_y, n_traffic = window_of(d, outcome.job_id)
        kept = 2 * N - len(TRAFFIC_ZEROS) - len(REFERENCE_ZEROS)
        assert (window_x.shape[0], window_y.shape[0]) == (kept, kept)
        assert n_traffic == N - len(TRAFFIC_ZEROS)
        assert (window_y != 0).all()
        assert f"{len(TRAFFIC_ZEROS)} of the {N} labelled traffic rows" in caplog.text
        assert f"{len(REFERENCE_ZEROS)} of the {N} reference rows" in caplog.text
        assert "objective mape cannot score (a label of 0)" in caplog.text

        runner = TuningJobRunner(
            store=d.store,
            registry=d.registry,
            artefacts=d.artefacts,
            config=d.config,
            worker="test",
        )
        done = runner.run(outcome.job_id)
        assert done.status == "succeeded", done.error
        assert done.result is not None and np.isfinite(done.result["best_value"])
    finally:
        d.close()
