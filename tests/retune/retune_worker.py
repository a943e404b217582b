"""A tuning worker process for the multi-process tests: ``python retune_worker.py URL
STUDY MAX_TRIALS [FOLD_SECONDS [PARK_AFTER MARKER]]`` runs :func:`retune.run_study` (on
an RDB URL with 1 s heartbeats, or on a journal file) and prints the result as JSON.
``FOLD_SECONDS`` stretches every fold. With ``PARK_AFTER``, the first trial to start once
that many trials completed stops in its first fold for good, after creating the file
``MARKER``: a test kills the worker there, knowing the trial cannot end first."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, run_study
from retune.cv import StratifiedKFoldCV


@dataclass(frozen=True)
class SlowFolds(StratifiedKFoldCV):
    fold_s: float = 0.0
    # (storage URL, study, completed trials, marker file): where a trial parks for good
    park: tuple[str, str, int, str] | None = None

    def split(self, x: Any, y: Any, *, groups: Any = None, seed: int) -> Iterator[Any]:
        if self.park is not None and _in_trial_after(*self.park[:3]):
            Path(self.park[3]).touch()
            # until the test kills the process; heartbeats go on meanwhile
            threading.Event().wait()
        for fold in super().split(x, y, groups=groups, seed=seed):
            time.sleep(self.fold_s)
            yield fold


def _in_trial_after(url: str, study: str, completed: int) -> bool:
    """Whether a trial is running (this split is a trial's, not the study's checks before
    any trial) and at least ``completed`` trials completed."""
    from retune._optuna import close_storage, make_storage

    backend = make_storage(url, heartbeat_interval=None)
    try:
        trials = optuna.load_study(study_name=study, storage=backend).get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return False
    finally:
        close_storage(backend)
    states = [t.state for t in trials]
    return (
        optuna.trial.TrialState.RUNNING in states
        and states.count(optuna.trial.TrialState.COMPLETE) >= completed
    )


def main() -> None:
    url, study, max_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fold_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    park = (url, study, int(sys.argv[5]), sys.argv[6]) if len(sys.argv) > 6 else None
    x, y = binary(seed=21, n=1500, n_features=10)
    result = run_study(
        storage=url,
        study_name=study,
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=SlowFolds(n_splits=3, fold_s=fold_s, park=park),
        budget=Budget(max_trials=max_trials),
        plan=None,
        seed=0,
        heartbeat_interval=1 if "://" in url else None,  # a journal file has no heartbeats
    )
    print(
        json.dumps(
            {
                "n_trials": result.n_trials,
                "best_value": result.best_value,
                "stopped_by": result.stopped_by,
            }
        )
    )


if __name__ == "__main__":
    main()
