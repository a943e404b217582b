"""A regression model whose champion was fitted on half of some rows and whose traffic,
the other half, is mirrored and labelled: for the tests of which labels a retune's
training window leaves out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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
N = 200  # the champion's reference rows, and as many traffic requests


def regression_daemon(tmp_path: Path, objective: str, tuning: dict[str, Any]) -> Daemon:
    """A daemon (scheduler off, no workers) of the regression ``MODEL`` tuned for
    ``objective`` with ``tuning``, retuned by hand."""
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
        "models": [
            {
                "name": MODEL,
                "task": "regression",
                "objective": {"name": objective},
                "tuning": tuning,
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    return Daemon(build_config(raw, env={}), env={})


def serve_labelled(
    d: Daemon, x: np.ndarray, y: np.ndarray, *, fit_on: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register a ridge champion fitted on the first ``N`` rows (on ``fit_on``'s labels,
    if given) with those rows as its reference, and mirror and label the last ``N`` as
    its traffic; the traffic's rows, labels and the champion's answers."""
    champion = fit_pipeline(
        {"estimator": "ridge"}, x[:N], (y if fit_on is None else fit_on)[:N], seed=0
    )
    d.registry.register(
        MODEL,
        to_onnx(champion, x.shape[1]),
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
        [output_record(MODEL, ids[i], 1, "external", predicted[i : i + 1], None) for i in range(N)],
    )
    statuses = d.store.add_labels(
        MODEL, [LabelItem(request_id=ids[i], value=float(yt[i])) for i in range(N)]
    )
    assert set(statuses) == {"created"}
    return xt, yt, predicted


def window_of(d: Daemon, job_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The training window of job ``job_id``: its rows, labels and traffic rows."""
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    return training_window(
        d.store, d.artefacts, model, cfg, d.store.get_job(job_id), parent=d.store.champion(MODEL)
    )
