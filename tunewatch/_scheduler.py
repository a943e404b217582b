"""Scheduled work, run by one leader process only.

Every process runs a small APScheduler (3.x) ``BackgroundScheduler`` and renews a lease in
the store every third of its life on a thread of its own, timed by the monotonic clock
(:mod:`tunewatch._scheduler_renewal`), not as an APScheduler job: the jobs' pool, full of
long evaluations, cannot hold the renewal back past the lease's expiry, nor can a wall
clock stepped back (APScheduler times its jobs by it, and stepped back an hour it ran no
renewal for that hour). A step is logged, and the interval jobs' next runs are moved back
with it, so they keep their intervals in real time. The process holding the
lease schedules the per-model jobs (evaluation, comparisons, re-tuning schedules and
the retries of a scheduled retune the quota suppressed) with
fixed ids, ``coalesce=True`` and ``max_instances=1``; a process that loses the lease
removes them, and a job starts only while the lease this process last renewed is
unexpired by its own clock. A failing job is logged with its traceback, counted, and
simply runs again at its next tick; so does a leader whose store failed to list the
models: it keeps the jobs it has. At shutdown, running jobs get ``STOP_GRACE_S`` to
finish before the lease is released; a ``start`` that fails releases it at once.

A run that waits for a thread runs late rather than not at all (``misfire_grace_time=None``;
coalescing makes a backlog one run): with APScheduler's 60 s grace, a scheduled retune
held behind ten long evaluations was dropped unrecorded and ran a period later. A job
whose last run the store records (an evaluation, a comparison, a standing schedule's run)
keeps its phase across leaders: a new leader runs it an interval after that run, or soon
when that has passed (overdue runs of one kind spread over ``CATCH_UP_S``). Interval jobs
of one kind with no record start spread over their interval rather than at one instant,
and leader tasks (the job launcher) have threads of their own, so a backlog of per-model
runs cannot hold them back.

Only the leader exports the evaluation figures (``ServingMetrics.exports_evaluation``): a
process that takes the lease exports each model's from its latest stored evaluations at
once, and one that does not hold it drops them at every tick — a leader cut off from the
store too, once its lease has run out by its own clock (within the lease it keeps them);
and none are collected from a process that counts itself the leader once its lease has run
out by its own clock (its renewals stalled), before any tick drops them.
Every process running the scheduler exports ``tunewatch_scheduler_leader`` (1 while it
holds the lease, by the same clock) and when it last renewed it
(:mod:`tunewatch._scheduler_lease`).
The counters the shipped rules read through ``increase()`` start at 0: each scheduled
job's ``<job>_failed`` and ``<job>_skipped`` when it is scheduled, each scheduled model's
events (every type), which the leader counts from the store whichever process raised them
(:mod:`tunewatch._event_counts`, a task).

The leader also exports each job's streaks (``tunewatch_scheduled_streak``, under the
outcomes the counter names): ``<job>_failed``, its runs failed in a row (0 after one that
succeeds); ``<job>_skipped``, its runs skipped since it last ended a run with none due
meanwhile; ``reference_unreadable``, a model's evaluations in a row that could not read
its champion's reference snapshot (counted by the evaluator, in the leader). A job failing every
run at an interval of 30 minutes or more never fails three times an hour, the most the
counter's ``increase()`` can see; the streak counts its failures however far apart. They
start at 0 when the job is scheduled, count from when this process took the lease, and
are dropped with the evaluation figures when it loses it, and with a job that is removed.

A run that comes due while the job's previous run is still going is skipped (runs of one
job never overlap), counted as ``<job>_skipped`` under its model (``-`` for a task) and
logged naming the job and the model, at most once per job in ``SKIP_LOG_EVERY_S`` with
the count of the skips not logged since. APScheduler's own warning for each skip, which
named only ``Scheduler._guarded.<locals>.run``, is filtered out; every job is named after
its id (``evaluate:credit``) in APScheduler's other lines.

This module is the scheduler's front: :class:`Scheduler` wires APScheduler, adds and
removes the leader's jobs, exports the stored figures on a takeover and guards each run.
The jobs as data and when each first runs (:class:`PerModelJob`, :class:`Task`,
:func:`due_after`, ``CATCH_UP_S``) live in :mod:`tunewatch._scheduler_jobs`; taking,
renewing, holding at shutdown and releasing the lease (``LEASE``) in
:mod:`tunewatch._scheduler_lease`; counting runs failed and skipped, and their streaks, in
:mod:`tunewatch._scheduler_runs`. Their names are re-exported here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor import ServingMetrics
from tunewatch._actions import count_events_from_zero
from tunewatch._approval_expiry import expiry_task
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import StoreUnavailableError
from tunewatch._evaluation_events import export_stored
from tunewatch._event_counts import EventCounts
from tunewatch._outage_log import OutageLog
from tunewatch._retention_task import purge_task
from tunewatch._scheduler_jobs import (
    CATCH_UP_S,
    PerModelJob,
    Task,
    Wanted,
    _due,
    _first_runs,
    _job_id,
    _trigger,
    due_after,
)
from tunewatch._scheduler_lease import LEASE, Lease, Renewal
from tunewatch._scheduler_renewal import Renewals
from tunewatch._scheduler_runs import NO_SKIP_WARNINGS, SKIP_LOG_EVERY_S, RunAccounts
from tunewatch._study_archive import archive_task
from tunewatch._tuning_metrics import tuning_task
from tunewatch.store import Store

__all__ = [
    "CATCH_UP_S",
    "LEASE",
    "RENEWAL",
    "SHARED_THREADS",
    "SKIP_LOG_EVERY_S",
    "STOP_GRACE_S",
    "TASK_EXECUTOR",
    "PerModelJob",
    "Scheduler",
    "Task",
    "Wanted",
    "due_after",
]

logger = logging.getLogger(__name__)

RENEWAL = "leadership"  # the lease's renewal, among the scheduled() work (its own thread)
TASK_EXECUTOR = "tasks"  # the leader tasks' own threads, one each
SHARED_THREADS = 10  # the pool of the per-model jobs without threads of their own
# How long shutdown waits for running scheduled jobs (evaluations, comparisons) before it
# releases the lease; with the launcher's 30 s for workers, within a 60 s stop timeout.
STOP_GRACE_S = 20.0


class Scheduler:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        jobs: list[PerModelJob],
        tasks: list[Task] | None = None,
        metrics: ServingMetrics | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        """``clock`` times the lease (monotonic seconds); ``now`` is the wall clock the
        jobs' first runs count from (their last runs are recorded by it)."""
        self.store = store
        self.config = config
        self.jobs = jobs
        self.tasks = list(tasks or [])
        self._stop = threading.Event()  # set at shutdown: a purge stops between batches
        retention_days = config.recording.retention_days
        if retention_days is not None:
            files = ArtefactStore(config.artefact_dir, store=store)  # drift reports' files
            self.tasks.append(purge_task(store, retention_days, stop=self._stop, artefacts=files))
        self.tasks.extend(self._archiving(store, config))
        self.tasks.append(expiry_task(store, config.approvals.expire_after_days))
        # the events and notifications stored by any process, counted here (_event_counts)
        self.event_counts = None if metrics is None else EventCounts(store, metrics, now=now)
        if metrics is not None:  # the running re-tuning jobs' progress, on /metrics
            self.tasks.append(tuning_task(store, metrics, quota=config.tuning.max_concurrent_jobs))
        if self.event_counts is not None:
            self.tasks.append(self.event_counts.task())
        self.metrics = metrics
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = Lease(
            store=store,
            holder=self.holder,
            ttl_s=config.scheduler.lease_ttl_s,
            clock=clock,
            now=now,
            metrics=metrics,
        )
        self._now = now
        self._clock = clock
        self._runs = RunAccounts(metrics, clock=clock)  # failures, skips and their streaks
        self._renewals = Renewals(
            renew=self._lead,
            interval_s=config.scheduler.lease_ttl_s / 3,
            on_step=self._stepped,
        )
        # how long running jobs may finish at shutdown (a forced quit shortens it)
        self.stop_grace_s = stop_grace_s
        self._stopping = False
        self._running = 0  # scheduled jobs running now
        self._idle = threading.Condition()
        executors = {
            "default": ThreadPoolExecutor(SHARED_THREADS),
            TASK_EXECUTOR: ThreadPoolExecutor(max(1, len(self.tasks))),
        }
        for job in jobs:
            if job.threads is not None:
                executors[job.executor] = ThreadPoolExecutor(job.threads)
        self._aps = BackgroundScheduler(
            timezone=UTC,
            executors=executors,
            # late rather than never: a run held back past APScheduler's grace is dropped
            # unrecorded; coalescing turns a backlog into one run
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        # With ``misfire_grace_time=None`` no run is missed (EVENT_JOB_MISSED): a late run
        # runs late. A run due while the previous one runs is skipped: count and log it.
        self._aps.add_listener(self._runs.skipped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler.scheduler").addFilter(NO_SKIP_WARNINGS)

    def _archiving(self, store: Store, config: Config) -> list[Task]:
        """The daily archiving of old studies (:mod:`tunewatch._study_archive`), unless
        ``tuning.archive_after_days`` is null, or no archive is named for a configured
        tuning storage (said once, here)."""
        days, archive = config.tuning.archive_after_days, config.tuning_archive_url
        if days is None:
            return []
        if archive is None:
            logger.warning(
                "old Optuna studies are not archived: `tuning.storage_url` is set and "
                "`tuning.archive_storage_url` is not (a storage other hosts share needs an "
                "archive they all read); name one, or set `tuning.archive_after_days: null` "
                "to keep every study in the tuning storage"
            )
            return []
        storage = config.tuning_storage_url
        return [
            archive_task(
                store, storage=storage, archive=archive, archive_after_days=days, stop=self._stop
            )
        ]

    @property
    def leader(self) -> bool:
        """Whether this process holds the scheduler lease (:mod:`tunewatch._scheduler_lease`)."""
        return self._lease.leader

    def start(self) -> None:
        """Start APScheduler, renew the lease (taking it if it is free) and start the
        renewals' thread."""
        if self.metrics is not None:  # says whether this process leads, from now on
            self.metrics.track_scheduler_lease(self._lease.holds)
        self._aps.start()
        try:
            self._lead()
        except BaseException:  # cleanup only: the lease released, the error re-raised
            self._abandon_start()
            raise
        self._renewals.start()

    def _abandon_start(self) -> None:
        """After ``start`` failed: stop the renewals and give the lease up, should the
        failed renewal have taken it. Left taken, no process led until it expired, and
        the renewals, still running in a process that went on, kept it."""
        self._stopping = True  # a renewal from now on neither takes the lease nor adds jobs
        self._renewals.stop()
        with self._lease.lock:  # after a renewal in flight on the lease thread
            self._lease.release(maybe_taken=True)
        self._aps.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop starting jobs, give running ones ``stop_grace_s`` to finish while the lease
        is still renewed, then release it: released earlier, or left to expire, another
        process could run the same model's job alongside a running one, and the daemon
        would close the store under it. A renewal hanging in the store holds shutdown no
        longer than the grace; it lets the lease go itself when it returns."""
        self._stopping = True  # no renewal from now on takes or keeps the lease for long
        self._stop.set()
        self._renewals.stop()  # renewed here below while the jobs finish
        self._aps.shutdown(wait=False)
        ttl = self.config.scheduler.lease_ttl_s
        deadline = time.monotonic() + self.stop_grace_s  # real time, whatever the clock
        while True:
            with self._idle:
                left = deadline - time.monotonic()
                if self._idle.wait_for(lambda: self._running == 0, max(0.0, min(left, ttl / 3))):
                    break
            if time.monotonic() >= deadline:
                logger.warning(
                    "%d scheduled jobs still running %.0f s after shutdown began; releasing "
                    "the scheduler lease anyway",
                    self._running,
                    self.stop_grace_s,
                )
                break
            self._lease.hold(deadline)
        self._lease.release_by(deadline)
        self._renewals.join(deadline - time.monotonic())  # one hanging: it releases itself

    def _stepped(self, step_s: float) -> None:
        """The wall clock APScheduler times its jobs by moved ``step_s`` seconds more than
        the monotonic clock since the last renewal (on the renewals' thread, before a
        renewal). Stepped back, each interval job's next run moves back as much, so it
        keeps its interval in real time (it waited for the step's length as well); cron
        jobs keep their times on the wall clock. Stepped forward, the runs that came due
        by it run now, once each (coalesced), as if the time had passed. APScheduler is
        woken to count its wait again by the clock as it reads now."""
        if self._stopping:
            return
        moved = 0
        if step_s < 0:
            for job in self._aps.get_jobs():
                if not isinstance(job.trigger, IntervalTrigger) or job.next_run_time is None:
                    continue
                try:
                    job.modify(next_run_time=job.next_run_time + timedelta(seconds=step_s))
                except JobLookupError:  # removed meanwhile: nothing to move
                    continue
                moved += 1
        logger.warning(
            "the wall clock stepped %s %.1f s (against the monotonic clock since the last "
            "scheduler lease renewal); %s",
            "back" if step_s < 0 else "forward",
            abs(step_s),
            f"moved the next runs of {moved} interval jobs back as much"
            if step_s < 0
            else "the scheduled runs that came due by it run now, once each",
        )
        self._aps.wakeup()

    def scheduled(self) -> list[str]:
        """The ids of this process's scheduled work: the lease's renewal (``RENEWAL``, on
        a thread of its own, from ``start``) and the leader's jobs."""
        renewal = [RENEWAL] if self._renewals.started else []
        return sorted([*renewal, *(job.id for job in self._aps.get_jobs())])

    def recount(self, name: str, model: str) -> None:
        """Count the ``PerModelJob`` ``name`` of ``model`` from its last run again, as a
        new leader would: its next run is due after that (or now, when that has passed).
        For a job that ran outside its schedule (a run caught up); nothing when this
        process has no such job (it does not lead) or the store records no last run."""
        job = self._aps.get_job(_job_id(name, model))
        per_model = next((j for j in self.jobs if j.name == name), None)
        if job is None or per_model is None or per_model.last_run is None:
            return
        last = per_model.last_run(model)
        due = None if last is None else job.trigger.get_next_fire_time(last, last)
        if due is None:
            return
        try:
            job.modify(next_run_time=max(due, self._now()))
        except JobLookupError:  # removed meanwhile: this process lost the lease
            logger.info("%s:%s was unscheduled before it could be counted again", name, model)

    def _lead(self) -> None:
        with self._lease.lock:
            if self._stopping:
                return
            self._renew()
            if self._lease.abandoned:  # shutdown gave up waiting for this renewal: let it go
                self._lease.release()

    def _renew(self) -> None:
        """Renew the lease (the lease lock held), then add the jobs the leader lacks and
        remove the ones it should not have."""
        renewal = self._lease.renew()
        if renewal is Renewal.KEPT:  # the store failed within the lease: try next tick
            return
        leader = self.leader
        if self._stopping:  # the scheduler's jobs are gone with it: nothing to add
            return
        if renewal is Renewal.GAINED:
            self._export_stored()
            if self.event_counts is not None:  # from the last 15 minutes' events
                self.event_counts.start_over()
        wanted: dict[str, Wanted] = {}
        keep: set[str] = set()
        if leader:
            try:
                models = self.store.list_models()
            except Exception:  # the store failed after the lease was taken
                # Keep the jobs scheduled (and their times) and list again at the next
                # tick. Raised from here, the first renewal made ``start`` fail with the
                # lease taken: the daemon did not start and no process led until it expired.
                logger.exception(
                    "could not list the models to schedule their jobs; keeping the "
                    "scheduled ones until the next tick"
                )
                models = []
                keep.update(job.id for job in self._aps.get_jobs())
            for model in models:
                try:
                    wanted.update(self._model_jobs(model.name, model.task))
                    if self.metrics is not None:  # its jobs raise them here
                        count_events_from_zero(self.metrics, model.name)
                except Exception:  # one model's jobs, not every model's: log and go on
                    logger.exception("could not schedule the jobs of model=%s", model.name)
            for task in self.tasks:
                wanted[task.name] = Wanted(
                    task.interval_s,
                    self._guarded(task.name, None, task.run),
                    task.last_run,
                    task.name,
                    TASK_EXECUTOR,
                )
        removed = []
        for existing in self._aps.get_jobs():
            if existing.id not in keep and existing.id not in wanted:
                existing.remove()
                removed.append(existing.id)
        self._runs.forget(removed, kept=(j.id for j in self._aps.get_jobs()))
        have = {j.id for j in self._aps.get_jobs()}
        added = {job_id: want for job_id, want in wanted.items() if job_id not in have}
        triggers: dict[str, BaseTrigger] = {}
        dues: dict[str, tuple[Wanted, datetime | None]] = {}
        for job_id, want in added.items():
            try:  # this job's schedule only, not every model's (a trigger may overflow)
                triggers[job_id] = _trigger(want.when)
                dues[job_id] = (want, _due(job_id, want, triggers[job_id]))
            except Exception:
                logger.exception("could not schedule %s every %r", job_id, want.when)
        firsts = _first_runs(dues, self._now())
        for job_id, (want, _) in dues.items():
            first = firsts[job_id]
            try:
                when = {} if first is None else {"next_run_time": first}
                self._aps.add_job(
                    want.fn,
                    triggers[job_id],
                    id=job_id,
                    name=job_id,  # in APScheduler's lines: not Scheduler._guarded.<locals>.run
                    executor=want.executor,
                    replace_existing=True,
                    **when,
                )
            except Exception:
                logger.exception("could not schedule %s every %r", job_id, want.when)

    def _export_stored(self) -> None:
        """Export each model's figures and alarms as its latest stored runs left them
        (:func:`~tunewatch._evaluation_events.export_stored`; read, not evaluated: a
        takeover decides nothing) before any job is added. Until its first evaluation a
        new leader exported none, so every alert on ``tunewatch_alarm`` resolved and fired
        again at each deploy or failover, its ``for:`` restarted."""
        if self.metrics is None:
            return
        try:
            models = self.store.list_models()
        except Exception:  # the store failed: the first evaluations export them
            logger.exception("could not export the stored evaluation figures")
            return
        now = self._now()
        for model in models:
            try:  # one model's figures, not every model's
                cfg = self.config.model_or_default(model.name, model.task)
                export_stored(self.store, self.metrics, model, cfg, now=now)
            except Exception:
                logger.exception(
                    "could not export the stored evaluation figures of model=%s", model.name
                )

    def _model_jobs(self, model: str, task: str) -> dict[str, Wanted]:
        cfg = self.config.model_or_default(model, task)
        wanted: dict[str, Wanted] = {}
        for job in self.jobs:
            when = job.when(cfg)
            if when is not None:
                wanted[_job_id(job.name, model)] = Wanted(
                    when,
                    self._guarded(job.name, model, partial(job.run, model)),
                    None if job.last_run is None else partial(job.last_run, model),
                    job.name,
                    job.executor,
                )
        return wanted

    def _guarded(
        self, name: str, model: str | None, fn: Callable[[], object]
    ) -> Callable[[], None]:
        self._runs.scheduled(name, model)
        outage = OutageLog(
            logger,
            what=f"scheduled {name} of model={model}",
            retry="retrying next tick",
            now=self._now,
        )

        def run() -> None:
            with self._idle:
                self._running += 1
            try:
                if self._stopping:
                    return
                if not self._lease.holds():
                    logger.warning(
                        "scheduled %s of model=%s skipped: this process (%s) holds no "
                        "unexpired scheduler lease",
                        name,
                        model,
                        self.holder,
                    )
                    return
                fn()
            except StoreUnavailableError as exc:  # an outage: logged once, not every tick
                outage.failed(exc)
                self._runs.failed(name, model)
            except Exception:  # the job boundary: log, count, retry at the next tick
                logger.exception("scheduled %s of model=%s failed; retrying next tick", name, model)
                self._runs.failed(name, model)
            else:
                outage.succeeded()
                self._runs.succeeded(name, model)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        return run
