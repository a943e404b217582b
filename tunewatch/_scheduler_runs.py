"""What the scheduler counts of its jobs' runs: failures, skips and their streaks.

Each scheduled job exports ``<job>_failed`` and ``<job>_skipped`` under its model (``-``
for a task) at 0 from when it is scheduled, and the streaks of each
(``tunewatch_scheduled_streak``): its runs failed in a row, and its runs skipped since it
last ended a run with none due meanwhile. A run that comes due while the job's previous
run is still going is skipped (``max_instances=1``), counted, and logged naming the job
and the model at most once per job in ``SKIP_LOG_EVERY_S``; APScheduler's own warning for
each skip (:data:`NO_SKIP_WARNINGS` filters it) named only the function every job shares.
:class:`~tunewatch._scheduler.Scheduler` calls :class:`RunAccounts` from each guarded run
and from APScheduler's listener.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from apscheduler.events import JobEvent

from monitor import ServingMetrics
from tunewatch._evaluation import REFERENCE_UNREADABLE
from tunewatch._outage_log import ThrottledWarnings
from tunewatch._scheduler_jobs import _job_id

logger = logging.getLogger("tunewatch._scheduler")  # the scheduler's lines, one logger

# At most one line per job in this long about its runs skipped behind a running one:
# APScheduler logged every skip, one a tick per job while a database freeze held its runs.
SKIP_LOG_EVERY_S = 300.0


class _NoSkipWarnings(logging.Filter):
    """Drops APScheduler's warning for a run skipped at ``max_instances``: it names the
    job by its function (every job's is ``Scheduler._guarded.<locals>.run``) at every
    skip. :meth:`RunAccounts.skipped` logs and counts those runs instead; tunewatch's
    schedulers are the only APScheduler users in its processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str)
            and "skipped: maximum number of running instances" in record.msg
        )


NO_SKIP_WARNINGS = _NoSkipWarnings()


class RunAccounts:
    """The failures, skips and streaks of one scheduler's jobs, exported on ``metrics``
    (none: only the skips are logged); ``clock`` times the skip log."""

    def __init__(self, metrics: ServingMetrics | None, *, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self._clock = clock
        # each scheduled job's name, model and log of its skipped runs, by id (skipped)
        self._skips: dict[str, tuple[str, str | None, ThrottledWarnings]] = {}
        # the ids of the jobs a run of which came due and was skipped while their current
        # run went on: that run's end does not end their ``<job>_skipped`` streak
        self._overran: set[str] = set()
        self._overran_lock = threading.Lock()

    def scheduled(self, name: str, model: str | None) -> None:
        """The job ``name`` of ``model`` is scheduled: its failures and skips exported at 0
        (see :meth:`failed`), its streaks at 0 or kept, its skip log made once."""
        if self.metrics is not None:
            ServingMetrics.start_at_zero(
                self.metrics.evaluations,
                (model or "-", f"{name}_failed"),
                (model or "-", f"{name}_skipped"),
            )
            for outcome in (f"{name}_failed", f"{name}_skipped"):
                self.metrics.scheduled_streak.labels(model or "-", outcome)  # at 0, or kept
        job_id = _job_id(name, model)
        if job_id not in self._skips:  # kept across ticks: a new log would log every skip
            self._skips[job_id] = (
                name,
                model,
                ThrottledWarnings(every_s=SKIP_LOG_EVERY_S, clock=self._clock),
            )

    def failed(self, name: str, model: str | None) -> None:
        """Count a failed run: ``<name>_failed``, under model ``-`` for a task, and its
        streak. The series exists at 0 from when the job was scheduled (:meth:`scheduled`):
        born at 1 at the first failure, it hid that failure from ``increase()``, and
        ``TunewatchScheduledJobFailing`` fired at the fourth failure, not the third."""
        if self.metrics is not None:
            self.metrics.evaluations.labels(model or "-", f"{name}_failed").inc()
            self.metrics.scheduled_streak.labels(model or "-", f"{name}_failed").inc()
            self._ended(name, model)

    def succeeded(self, name: str, model: str | None) -> None:
        """End a run that succeeded: its ``<name>_failed`` streak back to 0. (A run ends
        without raising when its evaluation could not read the reference, the rest of the
        evaluation stored: the evaluator counts that streak, ``reference_unreadable``.)"""
        if self.metrics is None:
            return
        self.metrics.scheduled_streak.labels(model or "-", f"{name}_failed").set(0)
        self._ended(name, model)

    def _ended(self, name: str, model: str | None) -> None:
        """A run of the job ended (failed or not): its ``<name>_skipped`` streak is back to
        0 unless a run came due and was skipped while it went on (an hourly job whose
        every run takes 70 minutes has one run skipped an hour: its streak rises by one
        an hour)."""
        job_id = _job_id(name, model)
        with self._overran_lock:
            overran = job_id in self._overran
            self._overran.discard(job_id)
        if not overran and self.metrics is not None:
            self.metrics.scheduled_streak.labels(model or "-", f"{name}_skipped").set(0)

    def forget(self, removed: list[str], kept: Iterable[str]) -> None:
        """Drop the streaks of the jobs ``removed`` (their model left the store), and the
        ``reference_unreadable`` streak of a model left with no job among those ``kept``
        (ids): kept, a streak of 3 would hold its alert for the process's life."""
        if self.metrics is None or not removed:
            return
        left = {self._skips[job_id][1] for job_id in kept if job_id in self._skips}
        for job_id in removed:
            known = self._skips.get(job_id)
            if known is None:
                continue
            name, model, _ = known
            for outcome in (f"{name}_failed", f"{name}_skipped"):
                self.metrics.scheduled_streak.remove(model or "-", outcome)  # (none: no-op)
            if model is not None and model not in left:
                self.metrics.scheduled_streak.remove(model, REFERENCE_UNREADABLE)
            with self._overran_lock:
                self._overran.discard(job_id)

    def skipped(self, event: JobEvent) -> None:
        """A run of ``event.job_id`` came due while its previous run was still going and
        was skipped (``max_instances=1``; on APScheduler's thread): counted as
        ``<name>_skipped`` (exported at 0 from when the job was scheduled) and logged
        naming the job and the model, at most once in ``SKIP_LOG_EVERY_S`` per job."""
        known = self._skips.get(event.job_id)
        if known is None:  # not one of the leader's jobs: added to APScheduler by hand
            logger.warning("job %s skipped: its previous run is still running", event.job_id)
            return
        name, model, log = known
        if self.metrics is not None:
            self.metrics.evaluations.labels(model or "-", f"{name}_skipped").inc()
            self.metrics.scheduled_streak.labels(model or "-", f"{name}_skipped").inc()
        with self._overran_lock:
            self._overran.add(event.job_id)
        log.warning(
            logger,
            "scheduled %s of model=%s skipped: its previous run is still running (runs of "
            "one job never overlap; counted as %s_skipped)",
            name,
            model,
            name,
        )
