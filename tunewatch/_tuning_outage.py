"""A tuning job's study resumed across an outage of its storage (``tuning.storage_url``).

A PostgreSQL restart or failover under a running study ended it with Optuna's storage
error, which read as "invalid data in the commit" and failed the job for good (three
3-second restarts killed three workers, then the job). retune tells an unreachable storage
apart (:class:`retune.StudyStorageUnavailableError`); the study is run again once the
storage answers, resumed where its trials left it: the trial the outage cut is failed as
stale once its heartbeats' grace has passed, and retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from retune import StudyProgress, StudyStorageUnavailableError, TuningResult, study_progress
from tunewatch._outage_log import OutageLog

logger = logging.getLogger(__name__)

#: A study whose storage went out of reach is resumed once the storage answers again,
#: read after 1 s, then after waits doubling to at most 15 s...
STORAGE_RETRY_S = 1.0
STORAGE_RETRY_MAX_S = 15.0
#: ... for at most this long (from the outage's first failure): then the worker leaves
#: the job as a store outage does, running under it, for the launcher to queue again
#: when it reaps the worker's exit (after a wait; failed after ``MAX_CRASHES``).
STORAGE_OUTAGE_LIMIT_S = 300.0


def resumed_after_outages(
    run: Callable[..., TuningResult],
    /,
    *,
    what: str,
    storage_url: str,
    limit_s: float,
    interrupted: Callable[[], bool],
    stop: threading.Event | None,
    **kwargs: Any,
) -> TuningResult:
    """``run(**kwargs)``, a run of study ``kwargs["study_name"]`` (:func:`retune.run_study`)
    on ``storage_url``, run again each time it ends with the storage out of reach, once
    the storage answers (:func:`_await_storage`). ``what`` names the job in the log, where
    an outage is said once, and its end (:class:`~tunewatch._outage_log.OutageLog`)."""
    study = kwargs["study_name"]
    outage = OutageLog(
        logger,
        what=f"{what}: study {study}",
        retry=(
            f"waiting for its storage to answer again, for at most {limit_s:.0f} s, to "
            "resume the study (the trial the outage cut is retried)"
        ),
        now=lambda: datetime.now(UTC),
        traceback=False,
    )
    # The limit runs from the first failure of the runs that made no progress: a storage
    # that reads but cannot be written (a SQLite file of another user's) answered every
    # progress read, and a limit counted from each resume was never reached
    started: float | None = None
    seen: tuple[int, int] | None = None
    while True:
        try:
            return run(**kwargs)
        except StudyStorageUnavailableError as exc:
            if started is None:
                started = time.monotonic()
            progress = _await_storage(
                storage_url,
                study,
                exc,
                outage,
                started=started,
                limit_s=limit_s,
                interrupted=interrupted,
                stop=stop if stop is not None else threading.Event(),
            )
            reached = None if progress is None else (progress.n_trials, progress.n_complete)
            if reached != seen:  # the run before the outage got further: a new outage
                started, seen = None, reached


def _await_storage(
    storage_url: str,
    study: str,
    exc: StudyStorageUnavailableError,
    outage: OutageLog,
    *,
    started: float,
    limit_s: float,
    interrupted: Callable[[], bool],
    stop: threading.Event,
) -> StudyProgress | None:
    """The study's progress once study ``study``'s storage answers again (read after
    :data:`STORAGE_RETRY_S`, doubling to :data:`STORAGE_RETRY_MAX_S`); raise ``exc``, or
    the last read's error, once ``limit_s`` passed since ``started`` (``time.monotonic``),
    or the worker was asked to stop (``stop``) or the job was cancelled (``interrupted``:
    the study's end)."""
    wait_s = STORAGE_RETRY_S
    while True:
        outage.failed(exc)
        if time.monotonic() - started >= limit_s:
            raise exc
        if interrupted() or stop.wait(wait_s):
            raise exc
        try:
            progress = study_progress(storage_url, study)
        except StudyStorageUnavailableError as again:
            exc = again
            wait_s = min(2 * wait_s, STORAGE_RETRY_MAX_S)
            continue
        outage.succeeded()
        return progress
