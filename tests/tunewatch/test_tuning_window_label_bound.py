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
from retune import to_onnx
from retune.space import fit_pipeline
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._record_rows import output_record, request_record
from tunewatch._reference import Reference
from tunewatch._tuning_window import training_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem

MODEL = "price"
N = 200
SENTINEL = 3.4e38
#: the traffic requests, and the champion's reference rows, labelled with ``SENTINEL``
TRAFFIC_SENTINELS = (3, 50, 120)
REFERENCE_SENTINELS = (0, 7)


def test_an_rmse_window_leaves_out_sentinel_labels_naming_the_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
        "models": [
            {
                "name": MODEL,
                "task": "regression",
                "objective": {"name": "rmse"},
                "tuning": {"min_rows": 100},
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    d = Daemon(build_config(raw, env={}), env={})
    try:
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2 * N, 4)).astype(np.float32)
        y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.1, size=2 * N)
        champion = fit_pipeline({"estimator": "ridge"}, x[:N], y[:N], seed=0)
        y[N + np.asarray(TRAFFIC_SENTINELS)] = SENTINEL
        y[np.asarray(REFERENCE_SENTINELS)] = -SENTINEL
        d.registry.register(
            MODEL,
            to_onnx(champion, 4),
            VersionMetadata(task="regression", feature_names=("a", "b", "c", "d")),
            actor="test",
            stage="champion",
            reference=Reference(features=x[:N], labels=y[:N]),
        )
        xt, yt = x[N:], y[N:]
        predicted = champion.predict(xt)
        ids = [f"q{i}" for i in range(N)]
        d.store.write_records(
            [request_record(MODEL, ids[i], xt[i : i + 1], source="mirror") for i in range(N)],
            [
                output_record(MODEL, ids[i], 1, "external", predicted[i : i + 1], None)
                for i in range(N)
            ],
        )
        statuses = d.store.add_labels(
            MODEL, [LabelItem(request_id=ids[i], value=float(yt[i])) for i in range(N)]
        )
        assert set(statuses) == {"created"}

        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = d.store.get_job(outcome.job_id)
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        window_x, window_y, n_traffic = training_window(
            d.store, d.artefacts, model, cfg, job, parent=d.store.champion(MODEL)
        )
        kept = 2 * N - len(TRAFFIC_SENTINELS) - len(REFERENCE_SENTINELS)
        assert (window_x.shape[0], window_y.shape[0]) == (kept, kept)
        assert n_traffic == N - len(TRAFFIC_SENTINELS)
        assert float(np.abs(window_y).max()) < 10
        assert f"{len(TRAFFIC_SENTINELS)} of the {N} labelled traffic rows" in caplog.text
        assert f"{len(REFERENCE_SENTINELS)} of the {N} reference rows" in caplog.text
        rule = "objective rmse cannot score (a label past ±5e+24"
        assert caplog.text.count(rule) == 2, caplog.text

        # monitoring and the comparisons leave out the same traffic rows
        objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
        scored = objective.valid_rows(yt, predicted)
        assert np.flatnonzero(~scored).tolist() == list(TRAFFIC_SENTINELS)
    finally:
        d.close()
