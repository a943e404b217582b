"""The leader's daily retention purge (``recording.retention_days``): a daemon-wide task
of the scheduler's (:class:`tunewatch._scheduler.Task`)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tunewatch.store import Store

if TYPE_CHECKING:  # the scheduler imports this module: its Task is read at the call
    from tunewatch._artefacts import ArtefactStore
    from tunewatch._scheduler import Task

logger = logging.getLogger(__name__)

#: The retention purge's task (``recording.retention_days``): once a day.
PURGE_TASK = "purge_records"
PURGE_INTERVAL_S = 86_400.0
#: When a store holds no purge yet: long past, so a new leader purges soon (counted
#: from its takeover, a daemon restarted more often than daily would never purge).
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
#: The newest purge entries read for the last run (past stopped ones).
_LAST_RUNS = 10


def purge_task(
    store: Store,
    retention_days: float,
    *,
    stop: threading.Event | None = None,
    artefacts: ArtefactStore | None = None,
) -> Task:
    """Delete the records older than ``retention_days`` by the database's clock, daily;
    each run is audited, and the newest audit entry is when it last ran.

    Not the training window of a queued or running re-tuning job (the time of its earliest
    request, recorded in its spec by its first worker): a worker resuming or joining the
    job reads the window again, and a window missing its oldest rows is another dataset,
    which its study refuses. The cut-off is moved back to the earliest such start, and
    the rows it keeps go at the first run after the job ends. The start is read again in
    each batch's transaction: a job recording its start while the purge runs keeps its
    window too.

    ``stop`` (the scheduler's shutdown) ends a run between batches; it is audited with
    what it deleted (``outcome: stopped``) and does not count as the last run.

    With ``artefacts`` (the daemon's), a run that was not stopped then deletes the drift
    reports of the windows ended before its cut-off, and their files
    (:func:`tunewatch._drift_report_purge.purge_drift_reports`); without, reports are
    kept (a row deleted without its file would leave the file unnamed)."""
    from tunewatch._scheduler import Task

    def run() -> None:
        before = store.database_now() - timedelta(days=retention_days)
        held = store.earliest_job_window_start()
        if held is not None and held[1] < before:
            job_id, start = held
            logger.info(
                "purge cut-off moved back from %s to %s: job %d (queued or running) trains "
                "on the window from then, which its workers read again",
                before.isoformat(),
                start.isoformat(),
                job_id,
            )
            before = start
        counts = store.purge_records(before=before, keep_job_windows=True, stop=stop)
        logger.info(
            "purged%s the records received before %s: %d requests, %d outputs, %d labels",
            " (stopped part-way)" if stop is not None and stop.is_set() else "",
            before.isoformat(),
            counts.requests,
            counts.outputs,
            counts.labels,
        )
        if artefacts is not None and not (stop is not None and stop.is_set()):
            from tunewatch._drift_report_purge import purge_drift_reports  # imports pandas

            purge_drift_reports(store, artefacts, before=before)

    def last_run() -> datetime:
        # a run stopped part-way (a shutdown) is not a run: the next leader purges soon
        entries = store.audit_log(_LAST_RUNS, action=PURGE_TASK, actor="scheduler")
        ran = (e.at for e in entries if e.details.get("outcome") != "stopped")
        return next(ran, _NEVER)

    return Task(PURGE_TASK, PURGE_INTERVAL_S, run, last_run)
