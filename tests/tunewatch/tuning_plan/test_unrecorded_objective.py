"""A study tuned by a release before studies recorded their objective (an Optuna study
attribute) recorded none, and every later job's warm start left it out as perhaps tuned
for another objective: after an upgrade the first retunes started cold. The version it
registered names its objective (`details.objective`), and the plan reads it from there,
saying so; with no version to read it from, the study is left out as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from monitor.objectives import make_objective
from retune.space import load_search_space
from retune.warmstart import WarmStartPlan
from tests.tunewatch.tuning_plan import MODEL
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_results import study_name
from tunewatch.store import Store

SHA = "0" * 64
SPACE = {
    "format_version": 1,
    "name": "test_tiny",
    "params": {
        "estimator": {"type": "categorical", "choices": ["logistic"]},
        "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
    },
}


def _earlier_study(
    store: Store, storage: str, *, objective: str | None, pinned: dict[str, Any] | None = None
) -> str:
    """A succeeded retune of ``MODEL`` whose study (three complete trials) recorded the
    objective ``pinned`` (none, as before studies recorded one, when ``None``) and, unless
    ``objective`` is ``None``, registered a version whose details name ``objective``."""
    job, _ = store.create_job(model=MODEL, kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "old-release")
    name = study_name(job)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    if pinned is not None:
        study.set_user_attr("objective", pinned)
    dists = {
        "estimator": CategoricalDistribution(["logistic"]),
        "C": FloatDistribution(0.01, 10.0, log=True),
    }
    for c, loss in ((0.1, 0.4), (1.0, 0.3), (3.0, 0.5)):
        trial = optuna.create_trial(
            params={"estimator": "logistic", "C": c}, distributions=dists, value=loss
        )
        study.add_trial(trial)
    result: dict[str, Any] = {"study": name}
    if objective is not None:
        version = store.add_version(
            model=MODEL,
            artefact_sha256=SHA,
            hyperparameters={"estimator": "logistic", "C": 1.0},
            size_bytes=100,
            actor="old-release",
            study=name,
            details={"job": job.id, "objective": objective},
        )
        result["version"] = version.version
    store.finish_job(job.id, status="succeeded", result=result, worker="old-release")
    return name


def _plan(store: Store, storage: str, tmp_path: Path, objective: str) -> WarmStartPlan:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    plan = warm_start_plan(
        store,
        storage,
        MODEL,
        kind="enqueue",
        space=load_search_space(space),
        objective=make_objective(objective, task="binary"),
    )
    assert plan is not None
    return plan


def test_a_study_that_recorded_no_objective_is_read_as_the_objective_of_its_version(
    store: Store, storage: str, tmp_path: Path
) -> None:
    study = _earlier_study(store, storage, objective="log_loss")
    plan = _plan(store, storage, tmp_path, "log_loss")
    assert plan.history_studies == (study,)
    assert plan.n_history_trials == 3
    assert plan.enqueue  # it learns from the study's configurations
    assert (
        f"{study} recorded no objective: read as log_loss, the objective of v1 it registered"
        in (plan.notes)
    )
    assert not [n for n in plan.notes if n.startswith("left out")]


def test_a_study_read_as_another_objective_than_the_jobs_is_left_out_named_by_it(
    store: Store, storage: str, tmp_path: Path
) -> None:
    study = _earlier_study(store, storage, objective="log_loss")
    plan = _plan(store, storage, tmp_path, "brier")
    assert plan.history_studies == ()
    assert not plan.enqueue
    assert (
        f"left out 1 earlier study tuned for another objective than 'brier': {study} (log_loss)"
        in plan.notes
    )
    assert (
        f"{study} recorded no objective: read as log_loss, the objective of v1 it registered"
        in (plan.notes)
    )


def test_a_study_whose_version_names_the_objective_without_its_parameters_is_left_out(
    store: Store, storage: str, tmp_path: Path
) -> None:
    """A version names its objective, never its parameters: one with parameters (an
    accuracy's threshold) may have been tuned with others."""
    study = _earlier_study(store, storage, objective="accuracy")
    plan = _plan(store, storage, tmp_path, "accuracy")
    assert plan.history_studies == ()
    assert (
        f"left out 1 earlier study tuned for another objective than 'accuracy': "
        f"{study} (no recorded objective)" in plan.notes
    )
    assert (
        f"{study} recorded no objective, and v1 it registered names accuracy without its "
        "parameters: left out" in plan.notes
    )


def test_a_study_that_recorded_no_objective_and_registered_no_version_stays_left_out(
    store: Store, storage: str, tmp_path: Path
) -> None:
    study = _earlier_study(store, storage, objective=None)
    plan = _plan(store, storage, tmp_path, "log_loss")
    assert plan.history_studies == ()
    assert plan.notes == (
        f"left out 1 earlier study tuned for another objective than 'log_loss': "
        f"{study} (no recorded objective)",
    )


def test_a_study_that_recorded_its_objective_is_read_by_it_whatever_its_version_says(
    store: Store, storage: str, tmp_path: Path
) -> None:
    pinned = {"name": "brier", "params": {}}
    study = _earlier_study(store, storage, objective="log_loss", pinned=pinned)
    old = _earlier_study(store, storage, objective="log_loss")
    plan = _plan(store, storage, tmp_path, "log_loss")
    assert plan.history_studies == (old,)
    assert (
        f"left out 1 earlier study tuned for another objective than 'log_loss': {study} (brier)"
        in plan.notes
    )
    assert not [n for n in plan.notes if n.startswith(f"{study} recorded no objective")]
