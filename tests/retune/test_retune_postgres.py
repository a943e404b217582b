"""Several worker processes on one study in PostgreSQL; a killed worker's trial is
failed by the heartbeat and retried, and the study completes."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from retune_data import binary, small_space
from sqlalchemy import text

from monitor.objectives import make_objective
from retune import Budget, load_history, run_study, study_progress
from retune._optuna import RUN_ATTR
from retune.cv import StratifiedKFoldCV

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
pytestmark = pytest.mark.postgres


def _worker(
    url: str, study: str, max_trials: int, fold_s: float = 0.0, *, parked: Path | None = None
) -> subprocess.Popen[str]:
    """A worker process; with ``parked``, its first trial stops in its first fold for good
    once it created that file."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    parking = [] if parked is None else ["0", str(parked)]
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "retune_worker.py"),
            url,
            study,
            str(max_trials),
            str(fold_s),
            *parking,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def storage(pg_url: str) -> Iterator[optuna.storages.RDBStorage]:
    """One engine for the test's own reads, disposed so no connection outlives the test."""
    rdb = optuna.storages.RDBStorage(pg_url)
    yield rdb
    rdb.engine.dispose()


def _trials(storage: optuna.storages.RDBStorage, study: str) -> list[optuna.trial.FrozenTrial]:
    if study not in optuna.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _states(storage: optuna.storages.RDBStorage, study: str) -> list[optuna.trial.TrialState]:
    return [t.state for t in _trials(storage, study)]


def _running_with_heartbeat(storage: optuna.storages.RDBStorage, study: str) -> bool:
    running = [
        t._trial_id for t in _trials(storage, study) if t.state == optuna.trial.TrialState.RUNNING
    ]
    if not running:
        return False
    with storage.engine.connect() as conn:
        beating = {row[0] for row in conn.execute(text("SELECT trial_id FROM trial_heartbeats"))}
    return bool(set(running) & beating)


def _running_are_stale(storage: optuna.storages.RDBStorage, study: str, grace_s: float) -> bool:
    """Optuna's own staleness rule: the database clock minus the last heartbeat exceeds the
    grace period for every running trial."""
    running = [
        t._trial_id for t in _trials(storage, study) if t.state == optuna.trial.TrialState.RUNNING
    ]
    with storage.engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one().replace(tzinfo=None)
        beats = dict(conn.execute(text("SELECT trial_id, heartbeat FROM trial_heartbeats")).all())
    return bool(running) and all(
        tid in beats and (now - beats[tid]).total_seconds() > grace_s for tid in running
    )


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met before the timeout")


def test_two_worker_processes_share_one_study(
    pg_url: str, storage: optuna.storages.RDBStorage
) -> None:
    study = f"two-{uuid.uuid4().hex[:8]}"
    # 0.3 s per fold: one worker alone would take seconds over the six trials, so the
    # other, started with it, trains some of them
    procs = [_worker(pg_url, study, 6, fold_s=0.3) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    trials = _trials(storage, study)
    # the trial running in the other worker counts: exactly max_trials are trained (a
    # worker that started one beyond the budget at the same time gives it up untrained,
    # its outcome left None, as every trial's is cleared when it starts: counting the
    # key's presence counted such a trial as trained, 7 of 6, when the race happened)
    trained = [t for t in trials if t.user_attrs.get("outcome") is not None]
    assert len(trained) == 6
    given_up = [t for t in trials if "outcome" in t.user_attrs and t not in trained]
    assert all("skipped" in t.user_attrs for t in given_up), given_up
    # both workers trained: each run records itself on its trials (a second worker that
    # waited for the first to finish, or never joined, reported the same result)
    assert len({t.user_attrs[RUN_ATTR] for t in trained}) == 2
    # a worker stops as soon as the other's trial in flight fills the budget
    assert all(r["n_trials"] >= 5 and r["stopped_by"] == "max_trials" for r in results)
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials]


def test_killed_worker_trial_is_failed_retried_and_the_study_completes(
    pg_url: str, storage: optuna.storages.RDBStorage, tmp_path: Path
) -> None:
    study = f"kill-{uuid.uuid4().hex[:8]}"
    # its first trial parks: the kill lands inside it (a trial could otherwise finish
    # between the check below and the kill, leaving nothing orphaned)
    parked = tmp_path / "parked"
    victim = _worker(pg_url, study, 4, parked=parked)
    _wait_for(parked.exists, timeout=60)
    # kill only once the running trial's heartbeat is recorded: a trial killed before its
    # first heartbeat is indistinguishable from one that just started
    _wait_for(lambda: _running_with_heartbeat(storage, study), timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)  # reaps it and closes its pipes
    assert optuna.trial.TrialState.RUNNING in _states(storage, study)  # orphaned by the kill
    # the heartbeat grace period (2 × 1 s) must pass before the trial counts as stale
    _wait_for(lambda: _running_are_stale(storage, study, grace_s=2.0), timeout=30)
    survivor = _worker(pg_url, study, 4)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    trials = _trials(storage, study)
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.FAIL in states
    retried = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "max_trials"


def test_reading_progress_history_and_tuning_leave_no_connection_open(
    pg_url: str, storage: optuna.storages.RDBStorage
) -> None:
    """Each progress read (a job's reporter reads once a second) opened a storage with a
    connection pool of its own and never closed it, nor did a history read (one storage
    per study) or a finished study: their idle connections stayed open until the garbage
    collector freed the engines, 34 per worker at peak."""
    app = f"tw_{uuid.uuid4().hex[:12]}"  # the connections opened below, and no others
    url = f"{pg_url}&application_name={app}"
    x, y = binary(seed=4, n=150)

    def open_connections() -> int:
        """Those left open: a closed one's server process takes a moment to leave."""
        query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :app")
        deadline = time.monotonic() + 5
        while True:
            with storage.engine.connect() as conn:
                n = int(conn.execute(query, {"app": app}).scalar_one())
            if n == 0 or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    gc.disable()  # as between two of the collector's passes
    try:
        run_study(
            storage=url,
            study_name="s",
            space=small_space(),
            x=x,
            y=y,
            objective=make_objective("log_loss"),
            cv=StratifiedKFoldCV(n_splits=2),
            budget=Budget(max_trials=2),
            plan=None,
            seed=0,
            heartbeat_interval=1,
        )
        after_study = open_connections()
        for _ in range(5):
            progress = study_progress(url, "s")
            assert progress is not None and progress.n_trials == 2
        assert study_progress(url, "missing") is None
        after_progress = open_connections()
        assert len(load_history(url, ["s", "s"])) == 4
        after_history = open_connections()
    finally:
        gc.enable()
    assert (after_study, after_progress, after_history) == (0, 0, 0)
