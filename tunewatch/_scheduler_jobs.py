"""The scheduler's jobs as data, and when each first runs.

A :class:`PerModelJob` is a job every model gets, a :class:`Task` a leader-only job that is
not per model; the leader turns both into :class:`Wanted` jobs (its trigger, what it runs,
when it last ran) and adds the ones it lacks, each first at the time :func:`_first_runs`
gives: a job whose last run the store records keeps its phase across leaders (it runs an
interval after that run, or soon when that has passed, overdue runs of one kind spread
over ``CATCH_UP_S``), and interval jobs of one kind with no record start spread over
their interval rather than at one instant. :func:`due_after` is the same count for a
caller of its own (a standing re-tuning schedule).

The scheduler that adds these jobs, and the lease that says which process does, are
:mod:`tunewatch._scheduler` (which re-exports these names) and
:mod:`tunewatch._scheduler_lease`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tunewatch._config import ModelConfig
from tunewatch._cron import crontab_trigger
from tunewatch._errors import StoreError

# The scheduler's logger, not this module's: its operators (and its tests) filter on it.
logger = logging.getLogger("tunewatch._scheduler")

#: How long after a leader takes over the overdue runs of one kind (evaluations, say) start
#: spread, one after another, rather than all at one instant; within their interval when
#: that is shorter. A job with threads of its own (queueing a retune) runs at once.
CATCH_UP_S = 60.0


@dataclass(frozen=True, slots=True)
class PerModelJob:
    """A job every model gets: ``run(model)`` on the trigger ``when(model_config)`` gives:
    seconds between runs, a cron expression (``"0 3 * * 0"``), or ``None`` (not for this
    model).

    With ``last_run(model)`` (when it last ran, as the store recorded it, or ``None``
    when it holds no record) the schedule counts from that run rather than from when a
    leader added the job, and a run missed meanwhile (no process led, or the daemon was
    down) runs once, soon: a leader change or a restart postponed evaluations by up to an
    interval each time, and more of them than one an interval meant none at all.

    With ``threads``, the job's runs have a pool of that many threads of their own, for a
    short job that must not wait behind long ones (queueing a scheduled retune behind
    evaluations); by default they share one pool of ``SHARED_THREADS``
    (:mod:`tunewatch._scheduler`).
    """

    name: str
    when: Callable[[ModelConfig], float | str | None]
    run: Callable[[str], object]
    last_run: Callable[[str], datetime | None] | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"`threads` must be at least 1, got {self.threads}")

    @property
    def executor(self) -> str:
        return "default" if self.threads is None else f"own:{self.name}"


def _job_id(name: str, model: str | None) -> str:
    """A scheduled job's id, and its name in APScheduler's lines: ``evaluate:credit``, or
    the task's name."""
    return name if model is None else f"{name}:{model}"


def _trigger(when: float | str) -> BaseTrigger:
    if isinstance(when, str):
        return crontab_trigger(when)
    return IntervalTrigger(seconds=when, timezone=UTC)


def due_after(when: float | str, last: datetime) -> datetime | None:
    """When a job run on ``when`` (seconds between runs, or a cron expression) is next due
    after a run at ``last``; ``None`` for a cron expression that fires no more."""
    due: datetime | None = _trigger(when).get_next_fire_time(last, last)
    return due


def _due(job_id: str, want: Wanted, trigger: BaseTrigger) -> datetime | None:
    """When ``want`` is next due counted from its last run, or ``None`` when the store
    holds no record of one (or could not say)."""
    if want.last_run is None:
        return None
    try:
        last = want.last_run()
    except StoreError:  # the store is down: count from now, as without a record
        logger.exception("could not read when %s last ran", job_id)
        return None
    return None if last is None else trigger.get_next_fire_time(last, last)


@dataclass(frozen=True, slots=True)
class Task:
    """A leader-only job that is not per model (e.g. starting workers for queued jobs).
    With ``last_run`` (as for a ``PerModelJob``) a new leader counts its interval from
    that run instead of from when it took over."""

    name: str
    interval_s: float
    run: Callable[[], object]
    last_run: Callable[[], datetime | None] | None = None


@dataclass(frozen=True, slots=True)
class Wanted:
    """A job the leader should have: its trigger, what it runs, when it last ran, its
    kind (a ``PerModelJob``'s or ``Task``'s name) and the executor its runs take."""

    when: float | str
    fn: Callable[[], None]
    last_run: Callable[[], datetime | None] | None
    kind: str
    executor: str


def _first_runs(
    added: dict[str, tuple[Wanted, datetime | None]], now: datetime
) -> dict[str, datetime | None]:
    """When each job in ``added`` (with when it is due counted from its last run, if the
    store recorded one) first runs; ``None``: by its trigger from now (a cron job with no
    record).

    A job due later keeps that time, an interval job's no later than an interval from now:
    a last run ahead of ``now`` (recorded before the wall clock stepped back, or by a
    replica whose clock runs ahead) held it back by that much as well. Overdue jobs of a
    kind run soon: the k-th of n at k / n of ``CATCH_UP_S`` (or of the interval, when
    shorter), the first right away; a job with threads of its own right away. Interval
    jobs of a kind with no record start spread over their interval: the k-th of n at
    (k + 1) / n of it, so the last runs a whole interval from now, as without spreading,
    and none sooner than 1 / n of it. Deterministic, and the phase stays: each later run
    is an interval after the one before."""
    firsts: dict[str, datetime | None] = {}
    overdue: dict[str, list[str]] = {}
    fresh: dict[str, list[str]] = {}
    for job_id, (want, due) in added.items():
        if due is not None and due > now:
            if isinstance(want.when, str):
                firsts[job_id] = due
            else:
                firsts[job_id] = min(due, now + timedelta(seconds=float(want.when)))
        elif due is not None and want.executor == "default":
            overdue.setdefault(want.kind, []).append(job_id)
        elif due is not None:
            firsts[job_id] = now
        elif isinstance(want.when, str):
            firsts[job_id] = None
        else:
            fresh.setdefault(want.kind, []).append(job_id)
    for ids in overdue.values():
        for k, job_id in enumerate(ids):
            when = added[job_id][0].when
            span = CATCH_UP_S if isinstance(when, str) else min(float(when), CATCH_UP_S)
            firsts[job_id] = now + timedelta(seconds=span * k / len(ids))
    for ids in fresh.values():
        for k, job_id in enumerate(ids):
            share = (k + 1) / len(ids)
            firsts[job_id] = now + timedelta(seconds=float(added[job_id][0].when) * share)
    return firsts
