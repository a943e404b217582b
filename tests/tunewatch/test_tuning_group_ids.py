"""Grouped CV needs a group id on every row a job trains on: the labelled traffic, and the
rows it takes from its champion's reference (``tuning.include_reference``). A job whose
missing ids were all in the reference said only "missing (NaN) in 300 of the window's 500
rows": the operator searched the traffic and found none missing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, Clock, feed
from tests.tunewatch.one_trial_tuning import SPACE
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner


def _daemon(tmp_path: Path, trained: list[ExampleModel], reference_ids: np.ndarray) -> Daemon:
    """A daemon whose model retunes with `cv: grouped` over feature x7 on a 200-row
    window, its champion (v1) registered by hand with 300 reference rows whose x7 is
    ``reference_ids`` (NaN: missing)."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    model: dict[str, Any] = {
        "name": MODEL,
        "task": "binary",
        "tuning": {
            "search_space": str(space),
            "window_rows": 200,
            "min_rows": 100,
            "max_trials": 1,
            "cv_folds": 2,
            "cv": "grouped",
            "cv_group_column": "x7",
            "patience": None,
            "wall_time_s": 120,
        },
        "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
    }
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [model],
    }
    d = Daemon(build_config(raw, env={}), env={})
    reference = trained[0].reference
    assert reference is not None and reference.labels is not None
    features = np.array(reference.features[:300], dtype=np.float32)
    features[:, 7] = reference_ids
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=dataclasses.replace(
            reference, features=features, labels=np.asarray(reference.labels[:300])
        ),
    )
    return d


def _customers(x: np.ndarray) -> None:
    """Eight customers, told by feature x7."""
    x[:, 7] = np.arange(len(x)) % 8


def _failed_retune(d: Daemon) -> str:
    outcome = d.dispatcher.handle(MODEL, "manual", {})
    assert outcome.job_id is not None
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
    )
    job = runner.run(outcome.job_id)
    assert job.status == "failed" and job.error is not None
    return job.error


def test_group_ids_missing_only_in_the_reference_are_said_to_be_there(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(tmp_path, trained, np.full(300, np.nan))
    try:
        feed(d, Clock(), 0, 200, shift=0.5, seed=3, edit=_customers)  # every row has its id
        error = _failed_retune(d)
        assert "x7 is missing (NaN) in 300 of the window's 500 rows" in error
        assert "300 of the 300 rows taken from version 1's reference" in error
        assert "tuning.include_reference" in error
        assert "none of the 200 labelled traffic rows" in error
        assert "set tuning.include_reference: false" in error
    finally:
        d.close()


@pytest.mark.parametrize(
    ("reference_missing", "said"), [(0, "none"), (100, "100")], ids=["traffic_only", "both_parts"]
)
def test_group_ids_missing_in_the_traffic_are_counted_apart_from_the_reference(
    trained: list[ExampleModel], tmp_path: Path, reference_missing: int, said: str
) -> None:
    """Traffic rows missing their id: leaving the reference out would not do, and the
    message does not say it would."""
    ids = np.arange(300, dtype=np.float64) % 8
    ids[:reference_missing] = np.nan

    def some_unknown(x: np.ndarray) -> None:
        _customers(x)
        x[:50, 7] = np.nan

    d = _daemon(tmp_path, trained, ids)
    try:
        feed(d, Clock(), 0, 200, shift=0.5, seed=3, edit=some_unknown)
        error = _failed_retune(d)
        missing = reference_missing + 50
        assert f"x7 is missing (NaN) in {missing} of the window's 500 rows" in error
        assert f"{said} of the 300 rows taken from version 1's reference" in error
        assert "50 of the 200 labelled traffic rows" in error
        assert "include_reference: false" not in error
    finally:
        d.close()
