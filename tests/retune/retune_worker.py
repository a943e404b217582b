"""A tuning worker process for the multi-process tests: ``python retune_worker.py URL
STUDY MAX_TRIALS [FOLD_SECONDS]`` runs :func:`retune.run_study` (on an RDB URL with 1 s
heartbeats, or on a journal file) and prints the result as JSON. ``FOLD_SECONDS``
stretches every fold, so that a kill lands inside a trial."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, run_study
from retune.cv import StratifiedKFoldCV


@dataclass(frozen=True)
class SlowFolds(StratifiedKFoldCV):
    fold_s: float = 0.0

    def split(self, x: Any, y: Any, *, groups: Any = None, seed: int) -> Iterator[Any]:
        for fold in super().split(x, y, groups=groups, seed=seed):
            time.sleep(self.fold_s)
            yield fold


def main() -> None:
    url, study, max_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fold_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    x, y = binary(seed=21, n=1500, n_features=10)
    result = run_study(
        storage=url,
        study_name=study,
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=SlowFolds(n_splits=3, fold_s=fold_s),
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
