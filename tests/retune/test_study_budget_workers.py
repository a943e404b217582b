"""The CPU budget of a study that several worker processes share.

Run as a script (``python test_study_budget_workers.py STORAGE GO_FILE``) it is one such
worker: it loads its data, waits until ``GO_FILE`` exists (so that the workers start
their studies together), runs :func:`retune.run_study` with ``cpu_time_s`` only, and
prints the result as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CPU_BUDGET_S = 2.0
STUDY = "shared"


def _worker(storage: str, go: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    return subprocess.Popen(
        [sys.executable, __file__, storage, str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _runs_cpu_s(storage: str) -> list[float]:
    """The CPU seconds each run of the study recorded at its end."""
    from retune._optuna import close_storage, make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    try:
        attrs = optuna.load_study(study_name=STUDY, storage=backend).user_attrs
    finally:
        close_storage(backend)
    return [float(v["cpu_s"]) for k, v in attrs.items() if k.startswith("time_spent:")]


@pytest.mark.parametrize("kind", ["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_workers_sharing_a_study_spend_its_cpu_budget_once(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """Each worker counted the others' CPU seconds only as recorded when it started: two
    workers started together on ``cpu_time_s=4`` spent 6.7 s. Each budget check re-reads
    what the other runs recorded, so the study overshoots by at most about the trial each
    worker was running."""
    storage = (
        str(tmp_path / "journal.log") if kind == "journal" else request.getfixturevalue("pg_url")
    )
    go = tmp_path / "go"
    workers = [_worker(storage, go) for _ in range(2)]
    go.touch()
    results: list[dict[str, Any]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["stopped_by"] for r in results] == ["cpu_time", "cpu_time"]
    spent = _runs_cpu_s(storage)
    assert len(spent) == 2
    # a worker's last trial may end past the budget, and what it does after its last
    # check (recording its end, reading the result) counts too: one trial's CPU and that
    # tail per worker. And the worker that passed the last check read the other's CPU as
    # last recorded: the part of the other's trial then running, with what the other did
    # between recording its progress and checking, went unseen: up to one more interval
    # from check to check (a CI run went 8 ms past the allowance without it). Without
    # re-reading (the defect this guards) the two spent about twice the budget
    overshoot_s = sum(r["trial_cpu_s"] + r["tail_cpu_s"] for r in results)
    overshoot_s += max(r["trial_cpu_s"] for r in results)
    assert sum(spent) <= CPU_BUDGET_S + overshoot_s, (spent, results)


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from retune_data import binary, small_space

    from monitor.objectives import make_objective
    from retune import Budget, run_study
    from retune._optuna import close_storage, make_storage
    from retune.cv import StratifiedKFoldCV

    storage, go = sys.argv[1], Path(sys.argv[2])
    # the storage's modules imported (and its schema created) before the budget counts:
    # else the two set-ups alone spend most of it, and a worker stops before any trial
    close_storage(make_storage(storage, heartbeat_interval=None))
    x, y = binary(seed=4, n=600)
    objective = make_objective("log_loss")
    deadline = time.monotonic() + 60
    while not go.exists():
        assert time.monotonic() < deadline, f"{go} not created within 60 s"
        time.sleep(0.01)
    checks = [time.process_time()]  # the interval up to the first check is one too

    def check() -> bool:  # called at each budget check: before each trial and after it
        checks.append(time.process_time())
        return False

    result = run_study(
        storage=storage,
        study_name=STUDY,
        space=small_space(),
        x=x,
        y=y,
        objective=objective,
        cv=StratifiedKFoldCV(n_splits=2),
        budget=Budget(max_trials=None, cpu_time_s=CPU_BUDGET_S),
        plan=None,
        seed=0,
        heartbeat_interval=1 if "://" in storage else None,
        interrupted=check,
    )
    ended = time.process_time()
    print(
        json.dumps(
            {
                "stopped_by": result.stopped_by,
                "cpu_s": result.cpu_s,
                # the most CPU this worker spent from one check to the next: a trial
                "trial_cpu_s": max(b - a for a, b in zip(checks, checks[1:], strict=False)),
                "tail_cpu_s": ended - checks[-1],
            }
        )
    )


if __name__ == "__main__":
    main()
