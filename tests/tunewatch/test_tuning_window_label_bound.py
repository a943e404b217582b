"""A retune's training window leaves out the regression labels RMSE does not score, as
monitoring and the comparisons do: labels of 3.4e38 (a common "missing" sentinel, inside
float32's range, which the labels API accepts) were left out of monitoring by their loss
but trained on, so a retune's CV RMSE came out 6e36 and a winner answering 4.6e37 was
registered as a shadow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.objectives import make_objective
from tests.tunewatch.regression_window import (
    MODEL,
    N,
    regression_daemon,
    serve_labelled,
    window_of,
)

SENTINEL = 3.4e38
#: the traffic requests, and the champion's reference rows, labelled with ``SENTINEL``
TRAFFIC_SENTINELS = (3, 50, 120)
REFERENCE_SENTINELS = (0, 7)


def test_an_rmse_window_leaves_out_sentinel_labels_naming_the_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = regression_daemon(tmp_path, "rmse", {"min_rows": 100})
    try:
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2 * N, 4)).astype(np.float32)
        clean = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.1, size=2 * N)
        y = clean.copy()
        y[N + np.asarray(TRAFFIC_SENTINELS)] = SENTINEL
        y[np.asarray(REFERENCE_SENTINELS)] = -SENTINEL
        yt, predicted = serve_labelled(d, x, y, fit_on=clean)[1:]

        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        window_x, window_y, n_traffic = window_of(d, outcome.job_id)
        kept = 2 * N - len(TRAFFIC_SENTINELS) - len(REFERENCE_SENTINELS)
        assert (window_x.shape[0], window_y.shape[0]) == (kept, kept)
        assert n_traffic == N - len(TRAFFIC_SENTINELS)
        assert float(np.abs(window_y).max()) < 10
        assert f"{len(TRAFFIC_SENTINELS)} of the {N} labelled traffic rows" in caplog.text
        assert f"{len(REFERENCE_SENTINELS)} of the {N} reference rows" in caplog.text
        rule = "objective rmse cannot score (a label past ±5e+24"
        assert caplog.text.count(rule) == 2, caplog.text

        # monitoring and the comparisons leave out the same traffic rows
        objective = make_objective("rmse", task="regression")
        scored = objective.valid_rows(yt, predicted)
        assert np.flatnonzero(~scored).tolist() == list(TRAFFIC_SENTINELS)
    finally:
        d.close()
