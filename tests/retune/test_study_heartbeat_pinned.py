"""A shared study's heartbeat interval is pinned by the worker that begins it, and every
worker joining it heartbeats and judges staleness at that interval, whatever its own.

Each worker judged a trial stale by its own interval: one at 2 s (a grace of 4 s) failed
as stale the trials a worker at 20 s was training, 10 s after their last heartbeat, and
that worker's work was thrown away, logged as if it had been paused."""

from __future__ import annotations

import logging
import warnings

import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from retune._optuna import StudyHandle, open_study

pytestmark = pytest.mark.postgres

STUDY = "s"


def _open(storage: str, heartbeat_interval: int) -> StudyHandle:
    return open_study(
        storage=storage,
        study_name=STUDY,
        seed=0,
        plan=None,
        pruner="none",
        heartbeat_interval=heartbeat_interval,
    )


def _beat_ago(handle: StudyHandle, trial_id: int, seconds: int) -> None:
    """Set ``trial_id``'s last heartbeat ``seconds`` before the database's now: its worker
    beat then (the database's clock judges staleness)."""
    with handle._storage.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            text(
                "UPDATE trial_heartbeats SET heartbeat = "
                "LOCALTIMESTAMP - make_interval(secs => :s) WHERE trial_id = :t"
            ),
            {"s": seconds, "t": trial_id},
        )


def _state(handle: StudyHandle, trial_id: int) -> TrialState:
    return handle._study._storage.get_trial(trial_id).state


def test_a_live_trial_of_a_worker_with_a_longer_heartbeat_is_not_failed_by_one_with_a_shorter(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    began = _open(pg_url, 20)  # begins the study: its trials beat every 20 s
    caplog.set_level(logging.INFO, logger="retune._optuna._handles")
    joined = _open(pg_url, 2)
    try:
        with warnings.catch_warnings():  # Optuna: heartbeats are meant for optimize()
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = began._study.ask()  # a trial the worker that began the study trains
        began._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        _beat_ago(began, trial._trial_id, 10)  # half its interval ago: alive
        joined.fail_stale_trials()
        assert _state(joined, trial._trial_id) == TrialState.RUNNING
        [said] = [r.getMessage() for r in caplog.records if "heartbeat interval" in r.getMessage()]
        assert "20 s" in said and "2 s" in said
        _beat_ago(began, trial._trial_id, 41)  # past the study's grace (2 x 20 s): stale
        joined.fail_stale_trials()
        assert _state(joined, trial._trial_id) != TrialState.RUNNING
    finally:
        joined.close()
        began.close()


def test_a_study_begun_before_studies_pinned_an_interval_is_pinned_by_its_next_worker(
    pg_url: str,
) -> None:
    """A study begun without heartbeats (or by a tunewatch before the pin) has none: the
    next worker that heartbeats pins its own, and the one after adopts it."""
    open_study(
        storage=pg_url, study_name=STUDY, seed=0, plan=None, pruner="none", heartbeat_interval=None
    ).close()
    first = _open(pg_url, 5)
    second = _open(pg_url, 2)
    try:
        assert first.heartbeat_interval == 5
        assert second.heartbeat_interval == 5
    finally:
        second.close()
        first.close()
