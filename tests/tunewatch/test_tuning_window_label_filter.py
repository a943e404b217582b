"""A retune's training window leaves out the traffic labels a job cannot train on, by the
rules it holds its champion's reference labels to: one absurd label already stored (1e300
for a regression model, accepted before the labels API bounded it) made every retune of
its model fail with an infinite loss while its request was in the window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retune import to_onnx
from retune.space import fit_pipeline
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._record_rows import output_record, request_record
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_window import training_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem

MODEL = "price"
N = 300
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: request index -> a stored label no job can train on
ABSURD = {17: 1e300, 40: -1.7976931348623157e308, 41: 1e39}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A regression champion, ``N`` mirrored requests and their labels, ``ABSURD`` among
    them, stored as they were before the labels API refused them."""
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [
            {
                "name": MODEL,
                "task": "regression",
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
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.2, size=N)
    champion = fit_pipeline({"estimator": "ridge"}, x, y, seed=0)
    d.registry.register(
        MODEL,
        to_onnx(champion, 4),
        VersionMetadata(task="regression", feature_names=("a", "b", "c", "d")),
        actor="test",
        stage="champion",
    )
    predicted = champion.predict(x)
    ids = [f"q{i}" for i in range(N)]
    d.store.write_records(
        [request_record(MODEL, ids[i], x[i : i + 1], source="mirror") for i in range(N)],
        [output_record(MODEL, ids[i], 1, "external", predicted[i : i + 1], None) for i in range(N)],
    )
    labels = [ABSURD.get(i, float(y[i])) for i in range(N)]
    statuses = d.store.add_labels(
        MODEL, [LabelItem(request_id=ids[i], value=labels[i]) for i in range(N)]
    )
    assert set(statuses) == {"created"}
    try:
        yield d
    finally:
        d.close()


def test_the_window_leaves_out_traffic_labels_no_job_can_train_on(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    parent = daemon.store.champion(MODEL)
    x, y, n_traffic = training_window(
        daemon.store, daemon.artefacts, model, cfg, job, parent=parent
    )
    assert (x.shape[0], y.shape[0], n_traffic) == (N - len(ABSURD),) * 3
    assert np.isfinite(y).all() and float(np.abs(y).max()) < 10
    assert f"{len(ABSURD)} of the {N} labelled traffic rows" in caplog.text


def test_a_retune_succeeds_with_an_absurd_label_in_its_window(daemon: Daemon) -> None:
    """Every trial failed: 'configuration scored a non-finite loss (inf) on fold 0'."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = TuningJobRunner(
        store=daemon.store,
        registry=daemon.registry,
        artefacts=daemon.artefacts,
        config=daemon.config,
        worker="test",
    )
    job = runner.run(outcome.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None and np.isfinite(job.result["best_value"])
