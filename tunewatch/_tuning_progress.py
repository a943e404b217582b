"""A running tuning job's ties to its row: two background threads — its heartbeat, which
tells the store the worker is alive, and its progress reporter, which copies the study's
progress into the job row, where the API, the leader's metrics
(:mod:`tunewatch._tuning_metrics`) and the CLI's progress bar read it — and the check,
between trials, of whether the job was cancelled (:class:`CancelWatch`). A store or
storage outage fails every heartbeat and report while it lasts: each logs it once, and
its end (:class:`~tunewatch._outage_log.OutageLog`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from retune import RetuneError, study_progress
from tunewatch._errors import TunewatchError
from tunewatch._outage_log import OutageLog
from tunewatch._tuning_metrics import CLOCKS
from tunewatch.store import JobRow, Store

logger = logging.getLogger(__name__)


class Heartbeat:
    """Tells the store every ``interval_s`` that this job's worker is alive, from claim to
    finish; the launcher fails jobs whose heartbeat stops (``JobLauncher.tick``). A beat
    that fails is logged (an outage once while it lasts, anything else with its
    traceback) and never ends the heartbeat: the next beat goes on."""

    def __init__(self, store: Store, job_id: int, interval_s: float) -> None:
        self._store, self._job_id, self._interval = store, job_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-heartbeat")
        self._outage = OutageLog(
            logger,
            what=f"job={job_id}: writing its heartbeat",
            retry=f"the job goes on; tried again every {interval_s:g} s",
            now=lambda: datetime.now(UTC),
            traceback=False,
        )
        self._faults = OutageLog(  # anything else: a fault, with its traceback
            logger,
            what=f"job={job_id}: writing its heartbeat",
            retry=f"the job goes on; tried again every {interval_s:g} s",
            now=lambda: datetime.now(UTC),
            level=logging.ERROR,
        )

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def _beat(self) -> None:
        try:
            self._store.heartbeat_job(self._job_id)
        except TunewatchError as exc:
            self._outage.failed(exc)
            return
        except Exception as exc:  # a beat's boundary: a heartbeat ended, the job was taken as dead
            self._faults.failed(exc)  # once with its traceback, repeats at debug
            return
        self._outage.succeeded()
        self._faults.succeeded()


class ProgressReporter:
    """Reads the study's progress every second and copies it into the job row (API,
    metrics, CLI) when it differs from the progress it last wrote: its trials, best value
    and seconds spent (``wall_s``, ``cpu_s``, as its runs last recorded them), and the
    time budget the job runs under (``wall_time_s``, ``cpu_time_s``: ``None`` for none),
    as the worker holding it recorded it in its spec. The callback (the CLI's progress
    bar) is called at every report that read it, written or unchanged.

    All of it changes once a trial, as a run records itself: writing it every second
    took the store's write lock every second (on SQLite the database's one), from a
    worker at ``tuning.worker_nice`` that a busy host deschedules inside the write, and
    every other writer (the scoring log's, so inference answers) waited seconds for it.
    The job's liveness does not hang on these writes: :class:`Heartbeat` writes it.

    A report that fails is skipped, never raised into the job, and logged: an outage of
    the store or of the study's storage once while it lasts; the progress it did not
    write is written at the next report."""

    def __init__(
        self, store: Store, job_id: int, storage: str, study: str, max_trials: int, callback: Any
    ) -> None:
        self._args = (store, job_id, storage, study, max_trials)
        self._callback = callback
        self._budget: dict[str, Any] | None = None  # the job's time budget, once read
        self._written: dict[str, Any] | None = None  # the progress last written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-progress")
        self._outage = OutageLog(
            logger,
            what=f"job={job_id}: updating its progress",
            retry="the job goes on; tried again every second",
            now=lambda: datetime.now(UTC),
            traceback=False,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._report()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._report()

    def _report(self) -> None:
        store, job_id, storage, study, max_trials = self._args
        try:
            p = study_progress(storage, study)
            if p is None:
                return
            progress = {
                "phase": "tuning",
                "study": study,
                "trials": p.n_trials,  # those that ran, as the result counts them
                "cost_rejected": p.n_cost_rejected,
                "complete": p.n_complete,
                "pruned": p.n_pruned,  # by outcome, as the result: not the cost rejections
                "best_value": p.best_value,
                "max_trials": max_trials,
                "wall_s": p.wall_s,  # as the study's runs recorded after each trial
                "cpu_s": p.cpu_s,
                **self._time_budget(),
            }
            if progress != self._written:
                store.update_job_progress(job_id, progress)
                self._written = progress
            self._outage.succeeded()
            if self._callback is not None:
                self._callback(progress)
        except (RetuneError, TunewatchError) as exc:
            self._outage.failed(exc)
        except Exception:  # a report's boundary: it never ends the job it reports on
            logger.exception("job=%d: progress not updated", job_id)

    def _time_budget(self) -> dict[str, Any]:
        """The job's ``wall_time_s`` and ``cpu_time_s`` as its spec records them (read
        once recorded; none before: the holding worker records it as it starts tuning)."""
        if self._budget is None:
            store, job_id = self._args[0], self._args[1]
            budget = store.get_job(job_id).spec.get("budget")
            if not isinstance(budget, dict):
                return {}
            self._budget = {key: budget.get(key) for key in ("wall_time_s", "cpu_time_s")}
        return self._budget


def budget_note(progress: Mapping[str, Any]) -> str:
    """The seconds a job spent, against its time budget where it has one, for the CLI's
    progress bar: ``"  wall 120/900 s  cpu 38/40 s"``; empty before its runs recorded
    any."""
    note = ""
    for clock, (spent_key, budget_key) in CLOCKS.items():
        spent, budget = progress.get(spent_key), progress.get(budget_key)
        if isinstance(spent, int | float):
            limit = ""
            if isinstance(budget, int | float):  # 900, 0.5 (not 0)
                limit = f"/{budget:.0f}" if budget >= 1 else f"/{budget:g}"
            note += f"  {clock} {spent:.0f}{limit} s"
    return note


class CancelWatch:
    """Whether job ``job_id`` was cancelled (``POST /v1/jobs/{id}/cancel``, ``tunewatch
    cancel``), read from its row each time it is called: the study calls it between
    trials (with the worker's stop event, its ``interrupted``), and the worker before it
    registers a version. Once seen, :attr:`cancelled` holds the cancelled job. A read that
    fails is logged (once while it lasts) and taken as "not cancelled": the job goes on."""

    def __init__(self, store: Store, job_id: int) -> None:
        self._store, self._job_id = store, job_id
        self.cancelled: JobRow | None = None
        self._failing = False

    def __call__(self) -> bool:
        if self.cancelled is not None:
            return True
        try:
            job = self._store.get_job(self._job_id)
        except TunewatchError as exc:
            if not self._failing:
                logger.warning(
                    "job=%d: whether it was cancelled could not be read (going on): %s",
                    self._job_id,
                    exc,
                )
            self._failing = True
            return False
        self._failing = False
        if job.status == "cancelled":
            self.cancelled = job
        return self.cancelled is not None
