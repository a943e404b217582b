"""A study records the model and the job it tunes (``model``, ``job_id`` user
attributes) once, when the caller names them: in a tuning storage several deployments
share, a study whose name was cut still says whose it is. A study begun before studies
recorded them is joined, and labelled then; a worker that names none changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, run_study
from retune.cv import StratifiedKFoldCV


def _run(storage: str, name: str, **labels: Any) -> None:
    x, y = binary(seed=4, n=120)
    run_study(
        storage=storage,
        study_name=name,
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=StratifiedKFoldCV(n_splits=2),
        budget=Budget(max_trials=2),
        plan=None,
        seed=0,
        **labels,
    )


def _attrs(storage: str, name: str) -> dict[str, Any]:
    return dict(optuna.load_study(study_name=name, storage=storage).user_attrs)


def test_a_study_created_for_a_job_records_its_model_and_job_id(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    model = "m" * 200
    _run(storage, "cut~0123456789abcdef-job3-0a1b2c3d", model=model, job_id=3)
    attrs = _attrs(storage, "cut~0123456789abcdef-job3-0a1b2c3d")
    assert (attrs["model"], attrs["job_id"]) == (model, 3)


def test_a_study_resumed_without_labels_keeps_them(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _run(storage, "credit-job4-0a1b2c3d", model="credit", job_id=4)
    _run(storage, "credit-job4-0a1b2c3d")
    attrs = _attrs(storage, "credit-job4-0a1b2c3d")
    assert (attrs["model"], attrs["job_id"]) == ("credit", 4)


def test_a_study_begun_before_studies_were_labelled_is_joined_and_labelled(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _run(storage, "credit-job5")
    assert "model" not in _attrs(storage, "credit-job5")
    _run(storage, "credit-job5", model="credit", job_id=5)
    attrs = _attrs(storage, "credit-job5")
    assert (attrs["model"], attrs["job_id"]) == ("credit", 5)


def test_a_study_keeps_the_labels_it_was_created_with_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _run(storage, "credit-job6-0a1b2c3d", model="credit", job_id=6)
    with caplog.at_level(logging.WARNING, logger="retune._study"):
        _run(storage, "credit-job6-0a1b2c3d", model="other", job_id=9)
    attrs = _attrs(storage, "credit-job6-0a1b2c3d")
    assert (attrs["model"], attrs["job_id"]) == ("credit", 6)
    said = [r.getMessage() for r in caplog.records if r.name == "retune._study"]
    assert any("recorded model 'credit', this run was given 'other'" in m for m in said)
