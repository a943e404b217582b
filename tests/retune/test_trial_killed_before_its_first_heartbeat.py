"""A trial whose worker was killed before its first heartbeat (SIGKILL, OOM, just as the
trial began) has no heartbeat row, and Optuna's stale check skips it: it stayed RUNNING
for good. A worker now writes that heartbeat before it names its run in the trial, and a
resumed run fails a trial naming no run once it has had none for the heartbeats' grace,
and trains its whole budget. One naming its run without a heartbeat is a run's that runs
without heartbeats, maybe alive: left alone."""

from __future__ import annotations

import threading
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, TuningResult, run_study
from retune._optuna import RUN_ATTR, close_storage, make_storage
from retune.cv import StratifiedKFoldCV

STUDY = "s"
#: The safety net of a resumed run: one still running this long is interrupted, and the
#: test fails (it waited for the killed trial however long: ``wall_time_s`` unset).
RUN_LIMIT_S = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/optuna.db"
    return str(request.getfixturevalue("pg_url"))


def _run(storage: str, max_trials: int, wall_time_s: float | None = None) -> TuningResult:
    """Run study ``s`` to ``max_trials`` with 1 s heartbeats (no ``wall_time_s`` unless
    given), in a thread interrupted should it not end within :data:`RUN_LIMIT_S`."""
    x, y = binary(seed=4, n=150)
    give_up = threading.Event()
    outcome: list[TuningResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(
                run_study(
                    storage=storage,
                    study_name=STUDY,
                    space=small_space(),
                    x=x,
                    y=y,
                    objective=make_objective("log_loss"),
                    cv=StratifiedKFoldCV(n_splits=2),
                    budget=Budget(max_trials=max_trials, wall_time_s=wall_time_s),
                    plan=None,
                    seed=0,
                    heartbeat_interval=1,
                    interrupted=give_up.is_set,
                )
            )
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(RUN_LIMIT_S)
    hung = thread.is_alive()
    give_up.set()
    thread.join()
    assert not hung, f"the run did not end within {RUN_LIMIT_S} s"
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _killed_before_its_first_heartbeat(storage: str, *, named: bool) -> int:
    """A trial left RUNNING with no heartbeat row, as a worker killed just after asking
    for it leaves it: ``named``, after it named its run (before Optuna's heartbeat thread
    wrote), else before."""
    backend = make_storage(storage, heartbeat_interval=None)  # writes no heartbeat
    try:
        trial = optuna.load_study(study_name=STUDY, storage=backend).ask()
        if named:
            trial.set_user_attr(RUN_ATTR, "time_spent:killed")
    finally:
        close_storage(backend)
    return trial.number


def _trials(storage: str) -> dict[int, optuna.trial.FrozenTrial]:
    backend = make_storage(storage, heartbeat_interval=None)
    try:
        return {t.number: t for t in optuna.load_study(study_name=STUDY, storage=backend).trials}
    finally:
        close_storage(backend)


def test_a_resumed_run_fails_a_trial_killed_before_its_first_heartbeat_and_trains_its_budget(
    storage: str,
) -> None:
    """Resumed to 3 trials with ``wall_time_s=None``, a run never ended: the killed trial
    kept its place of ``max_trials``, and once the run's own trials took the rest it
    waited the grace again at each stop."""
    assert _run(storage, max_trials=1).n_trials == 1
    killed = _killed_before_its_first_heartbeat(storage, named=False)
    resumed = _run(storage, max_trials=3)
    assert (resumed.n_trials, resumed.stopped_by) == (3, "max_trials")
    trials = _trials(storage)
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 3
    assert trials[killed].state == TrialState.FAIL
    assert [n for n, t in trials.items() if t.state == TrialState.RUNNING] == []


def test_a_trial_naming_its_run_without_a_heartbeat_is_not_failed(storage: str) -> None:
    """A run without heartbeats (``heartbeat_interval=None``, which ``run_study`` allows)
    sharing the study: its trials have none, and failing them would train them twice."""
    assert _run(storage, max_trials=1).n_trials == 1
    other = _killed_before_its_first_heartbeat(storage, named=True)
    # it holds its place of max_trials: one more is trained; the run waits for it, then
    # leaves it out
    resumed = _run(storage, max_trials=3, wall_time_s=4)
    assert (resumed.n_trials, resumed.stopped_by) == (2, "max_trials")
    assert _trials(storage)[other].state == TrialState.RUNNING
