"""A retune's training window leaves out the rows its objective cannot score whatever the
prediction, as monitoring and the comparisons do: under `mape` a few labels of 0 (which
the labels API accepts) made every trial fail on its first fold ("MAPE is undefined for
zero labels"), so no retune of the model could succeed while they were in the window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retune import to_onnx
from retune.space import fit_pipeline
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._record_rows import output_record, request_record
from tunewatch._reference import Reference
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_window import training_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem

MODEL = "price"
N = 200
#: the traffic requests, and the champion's reference rows, whose label is 0
TRAFFIC_ZEROS = (3, 50, 120)
REFERENCE_ZEROS = (0, 7)


def test_a_mape_window_with_zero_labels_leaves_them_out_and_tunes(
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
                "objective": {"name": "mape"},
                "tuning": {
                    "max_trials": 2,
                    "cv_folds": 2,
                    "patience": None,
                    "wall_time_s": 120,
                    "min_rows": 100,
                },
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    d = Daemon(build_config(raw, env={}), env={})
    try:
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2 * N, 4)).astype(np.float32)
        y = np.abs(2.0 * x[:, 0] - x[:, 1]) + 1.0 + rng.normal(scale=0.1, size=2 * N)
        y[N + np.asarray(TRAFFIC_ZEROS)] = 0.0
        y[np.asarray(REFERENCE_ZEROS)] = 0.0
        champion = fit_pipeline({"estimator": "ridge"}, x[:N], y[:N], seed=0)
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
