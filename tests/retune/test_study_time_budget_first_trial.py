"""A time budget shorter than the study's set-up (opening the study, settling its plan
and pins, enqueueing) stopped the study before its first trial, and the job failed with
"no trial completed: none ran". Budgets are checked after each finished trial: a study
no trial has finished in runs one; a resumed one whose time its trials spent does not."""

from __future__ import annotations

from typing import Any

import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, TuningResult, run_study
from retune.cv import StratifiedKFoldCV

#: far below any set-up's seconds: spent before the first trial could begin
_INSTANT_S = 1e-9


def _run(tmp_path: Any, kind: str, budget: Budget) -> TuningResult:
    x, y = binary(seed=4, n=150)
    journal = kind == "journal"
    return run_study(
        storage=str(tmp_path / "journal.log") if journal else f"sqlite:///{tmp_path}/o.db",
        study_name="s",
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=StratifiedKFoldCV(n_splits=2),
        budget=budget,
        plan=None,
        seed=0,
        heartbeat_interval=None if journal else 1,
    )


@pytest.mark.parametrize(
    "kind", [pytest.param("journal", id="journal"), pytest.param("sqlite", id="sqlite-heartbeats")]
)
@pytest.mark.parametrize(
    "limit",
    [pytest.param("wall_time_s", id="wall"), pytest.param("cpu_time_s", id="cpu")],
)
def test_a_time_budget_shorter_than_the_set_up_still_runs_one_trial(
    tmp_path: Any, kind: str, limit: str
) -> None:
    result = _run(tmp_path, kind, Budget(max_trials=None, **{limit: _INSTANT_S}))
    assert result.n_trials == 1
    assert result.stopped_by == limit[: -len("_s")]
    assert result.best_params


def test_a_resumed_study_whose_time_is_spent_runs_no_further_trial(tmp_path: Any) -> None:
    first = _run(tmp_path, "journal", Budget(max_trials=None, wall_time_s=_INSTANT_S))
    assert first.n_trials == 1
    resumed = _run(tmp_path, "journal", Budget(max_trials=None, wall_time_s=_INSTANT_S))
    assert resumed.stopped_by == "wall_time" and resumed.n_trials == 1
