"""A study's progress carries the wall and CPU seconds its runs spent, as they recorded
them after each trial: what its time budget counts. A running job showed trials out of
``max_trials`` only, and what it spent appeared only in a succeeded job's result."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune import Budget, study_progress
from retune._optuna import open_study
from tests.retune.test_retune_study import _run, _set_study_attr


def test_a_study_s_progress_adds_its_runs_cpu_and_counts_their_wall_time_once(
    tmp_path: Path,
) -> None:
    storage = str(tmp_path / "journal.log")
    open_study(
        storage=storage, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=None
    ).close()
    ended = {"started_at": 1000.0, "ended_at": 1100.0, "wall_s": 100.0, "cpu_s": 30.0}
    # still working: what it spent up to its last trial, from 1050 s to 1130 s
    live = {"started_at": 1050.0, "seen_at": 1130.0, "wall_s_so_far": 80.0, "cpu_s_so_far": 20.0}
    _set_study_attr(storage, "time_spent:a", ended)
    _set_study_attr(storage, "time_spent:b", live)
    _set_study_attr(storage, "objective", {"name": "log_loss"})  # not a run's record

    progress = study_progress(storage, "s")

    assert progress is not None
    assert (progress.wall_s, progress.cpu_s) == (130.0, 50.0)


def test_a_study_no_run_has_recorded_in_has_spent_nothing(tmp_path: Path) -> None:
    storage = str(tmp_path / "journal.log")
    open_study(
        storage=storage, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=None
    ).close()

    progress = study_progress(storage, "s")

    assert progress is not None and (progress.wall_s, progress.cpu_s) == (0.0, 0.0)


def test_a_finished_run_s_progress_shows_what_its_result_counts(tmp_path: Path) -> None:
    result = _run(tmp_path, budget=Budget(max_trials=2))

    progress = study_progress(str(tmp_path / "journal.log"), "s")

    assert progress is not None and progress.wall_s > 0 and progress.cpu_s > 0
    # recorded as the run ended, just before its result read its clocks
    assert progress.wall_s == pytest.approx(result.wall_s, abs=0.5)
    assert progress.cpu_s == pytest.approx(result.cpu_s, abs=0.5)
