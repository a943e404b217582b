"""The running re-tuning jobs' progress on ``/metrics``: a leader task of the scheduler's
(:class:`tunewatch._scheduler.Task`) that reads their rows, as each job's progress
reporter (:mod:`tunewatch._tuning_progress`) keeps them, and exports them.

Each running job has its series, labelled with its model and id (``job_id``: Prometheus
gives each target a ``job`` label): the trials it trained of its ``max_trials``, its best
loss so far, the wall and CPU seconds its study spent and its time budget
(``tuning.wall_time_s``, ``cpu_time_s``). The concurrent-job quota bounds the jobs, and a
job's series are removed at the first run after it ended (succeeded, failed, cancelled,
or queued again for another worker): none is left behind. A scrape reads only the
gauges; the store is read once a run, by the leader only (a process that does not lead
exports none, as the evaluation figures: ``ServingMetrics.clear_evaluation``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from monitor import ServingMetrics
from tunewatch.store import JobRow, Store

if TYPE_CHECKING:  # the scheduler imports this module: its Task is read at the call
    from prometheus_client import Gauge

    from tunewatch._scheduler import Task

#: The task's name (its ``<task>_failed`` and ``<task>_skipped`` outcomes under model ``-``).
TUNING_TASK = "export_tuning"
#: How often the leader reads the running jobs: about as often as Prometheus scrapes.
TUNING_INTERVAL_S = 5.0
#: The progress keys of a job's seconds spent and time budget, by ``clock`` label.
CLOCKS = {"wall": ("wall_s", "wall_time_s"), "cpu": ("cpu_s", "cpu_time_s")}


#: The running jobs read at most, unless the concurrent-job quota is larger: jobs started
#: under a larger quota than a restarted daemon's run on (their workers elsewhere).
MAX_JOBS = 100


def tuning_task(store: Store, metrics: ServingMetrics, *, quota: int) -> Task:
    """The leader's task exporting the running jobs' progress every ``TUNING_INTERVAL_S``;
    ``quota`` is ``tuning.max_concurrent_jobs``."""
    from tunewatch._scheduler import Task

    limit = max(quota, MAX_JOBS)
    return Task(TUNING_TASK, TUNING_INTERVAL_S, lambda: export_tuning(store, metrics, limit=limit))


def export_tuning(store: Store, metrics: ServingMetrics, *, limit: int = MAX_JOBS) -> None:
    """Export the progress of the (at most ``limit`` newest) running jobs as their rows
    hold it, and remove every other job's series; remove them all where this process
    does not lead the scheduler."""
    wanted: dict[Gauge, dict[tuple[str, ...], float]] = {g: {} for g in metrics.tuning_gauges}
    if metrics.exports_evaluation:
        for job in store.list_jobs(status="running", limit=limit):
            for gauge, labels, value in _series(metrics, job):
                wanted[gauge][labels] = value
    for gauge, series in wanted.items():
        for labels, value in series.items():
            gauge.labels(*labels).set(value)
        stale = {
            tuple(sample.labels.values())
            for family in gauge.collect()
            for sample in family.samples
            if tuple(sample.labels.values()) not in series
        }
        for labels in stale:
            gauge.remove(*labels)


def _series(metrics: ServingMetrics, job: JobRow) -> Iterator[tuple[Gauge, tuple[str, ...], float]]:
    """``job``'s series as its progress holds them: each gauge, its label values (in
    the gauge's order) and its value; none for a figure the progress lacks."""
    p = job.progress
    of_job = (job.model, str(job.id))
    trials, rejected = _number(p, "trials") or 0.0, _number(p, "cost_rejected") or 0.0
    yield metrics.tuning_trials, of_job, trials - rejected  # as max_trials counts them
    for gauge, key in (
        (metrics.tuning_max_trials, "max_trials"),
        (metrics.tuning_best_value, "best_value"),
    ):
        if (value := _number(p, key)) is not None:
            yield gauge, of_job, value
    for clock, (spent_key, budget_key) in CLOCKS.items():
        for gauge, key in ((metrics.tuning_spent, spent_key), (metrics.tuning_budget, budget_key)):
            if (value := _number(p, key)) is not None:
                yield gauge, (*of_job, clock), value


def _number(progress: Mapping[str, Any], key: str) -> float | None:
    """``progress[key]`` as a number, or ``None`` where it holds none (missing, null)."""
    value = progress.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
