"""A worker whose running trial another worker failed as stale (this one was paused past
the heartbeats' grace, SIGSTOP say) drops that trial and goes on with the study."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, StudyError, run_study
from retune._optuna import FailTrial, PruneTrial, TrialHandle, close_storage, make_storage
from retune._optuna._handles import open_study
from retune.cv import StratifiedKFoldCV


def _fail_from_elsewhere(url: str, study: str, number: int) -> None:
    """Fail RUNNING trial ``number`` of ``study`` through a storage of its own, as another
    worker's ``fail_stale_trials`` fails a trial whose heartbeats stopped."""
    backend = make_storage(url, heartbeat_interval=None)
    try:
        optuna.load_study(study_name=study, storage=backend).tell(number, state=TrialState.FAIL)
    finally:
        close_storage(backend)


def _states(url: str, study: str) -> dict[int, optuna.trial.FrozenTrial]:
    backend = make_storage(url, heartbeat_interval=None)
    try:
        trials = optuna.load_study(study_name=study, storage=backend).trials
    except KeyError:  # not created yet: the checks before the study opens split too
        return {}
    finally:
        close_storage(backend)
    return {t.number: t for t in trials}


@dataclass(frozen=True, kw_only=True)
class LosesATrial(StratifiedKFoldCV):
    """Folds whose trial numbered ``lost`` is failed by another worker as its folds begin
    (the split of the checks before any trial finds nothing RUNNING)."""

    storage: str = ""
    study: str = "s"
    lost: int = 1

    def split(self, x: Any, y: Any, *, groups: Any = None, seed: int) -> Iterator[Any]:
        trial = _states(self.storage, self.study).get(self.lost)
        if trial is not None and trial.state == TrialState.RUNNING:
            _fail_from_elsewhere(self.storage, self.study, self.lost)
        yield from super().split(x, y, groups=groups, seed=seed)


def test_a_study_whose_running_trial_was_failed_as_stale_drops_it_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker A, paused past its trial's grace, found on resuming that worker B had
    failed its trial as stale: its next write to the trial was refused, Optuna could not
    tell a FAIL trial, and A's StudyError failed the job B went on to finish."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    x, y = binary(seed=4, n=150)
    caplog.set_level(logging.WARNING, logger="retune")
    result = run_study(
        storage=url,
        study_name="s",
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=LosesATrial(n_splits=2, storage=url),
        budget=Budget(max_trials=3),
        plan=None,
        seed=0,
        heartbeat_interval=1,
    )
    assert (result.n_trials, result.stopped_by) == (3, "max_trials")
    trials = _states(url, "s")
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs.get("outcome") is None
    assert sorted(n for n, t in trials.items() if t.state == TrialState.COMPLETE) == [0, 2, 3]
    [lost] = [r for r in caplog.records if r.name.startswith("retune.")]
    assert lost.levelno == logging.WARNING and "trial 1 was failed by another" in lost.getMessage()
    assert "dropped, the study goes on" in lost.getMessage()


def _returns(trial: TrialHandle) -> float:
    return 0.5


def _records(trial: TrialHandle) -> float:
    trial.set_attr("fold_scores", [0.5])
    return 0.5


def _reports(trial: TrialHandle) -> float:
    trial.report_fold(0, 0.5)
    return 0.5


def _fails(trial: TrialHandle) -> float:
    raise FailTrial("vetoed")


def _prunes(trial: TrialHandle) -> float:
    raise PruneTrial("pruned after fold 0")


@pytest.mark.parametrize(
    "ending",
    [_returns, _records, _reports, _fails, _prunes],
    ids=["returns_its_loss", "records_an_attribute", "reports_a_fold", "fails", "prunes"],
)
def test_a_trial_lost_to_another_worker_is_dropped_however_the_objective_ends(
    tmp_path: Path, ending: Callable[[TrialHandle], float]
) -> None:
    """Optuna cannot tell a trial another worker finished: it raised ("Cannot tell a
    FAIL trial", or an assertion of its own when the objective returned a loss) out of
    the study, whatever the objective did after losing it."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    handle = open_study(
        storage=url, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=1
    )

    def objective(trial: TrialHandle) -> float:
        if trial.number == 1:
            _fail_from_elsewhere(url, "s", 1)
            return ending(trial)
        return float(np.float64(0.4) + trial.number / 100)

    def should_stop() -> str | None:
        complete = [t for t in handle.trials() if t.state == "COMPLETE"]
        return "enough" if len(complete) >= 3 else None

    try:
        handle.optimize(objective, should_stop=should_stop)
    finally:
        handle.close()
    trials = _states(url, "s")
    assert handle.stopped_by == "enough"
    assert [trials[n].state for n in sorted(trials)] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]


def test_an_objective_s_own_error_still_ends_the_study(tmp_path: Path) -> None:
    """Only a trial another process finished is dropped: an error of the objective's own
    (Optuna failed the trial and raised it again) ends the study as before."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    handle = open_study(
        storage=url, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=1
    )

    def objective(trial: TrialHandle) -> float:
        raise RuntimeError("a bug")

    try:
        with pytest.raises(StudyError, match="RuntimeError: a bug"):
            handle.optimize(objective, should_stop=lambda: None)
    finally:
        handle.close()
    assert [t.state for t in _states(url, "s").values()] == [TrialState.FAIL]
