"""How a tuning job's row records the end of one worker's part: finished (unless the job
ended otherwise meanwhile, whose end stands), failed and announced (only while this
worker holds the job), queued again after a stop, or finished at once when its study
registered its version already. The runner that reaches these ends is
:class:`tunewatch._tuning.TuningJobRunner`."""

from __future__ import annotations

import logging
from typing import Any

from tunewatch._errors import ConflictError
from tunewatch._tuning_results import job_result, registered_version
from tunewatch.store import JobRow, Store

logger = logging.getLogger(__name__)


def finish_registered(store: Store, job: JobRow) -> JobRow | None:
    """Finish a job whose study registered its version already, before any work: its
    worker died between registering and finishing (killed after the launcher's stop
    timeout, say, and the job queued again), and the study, registering once, would
    tune again only to be refused. ``None`` when no version is registered."""
    version = registered_version(store, job)
    if version is None:
        return None
    result = {
        **job_result(version),
        "recovered": "the worker that registered it stopped; finished by the next worker",
    }
    row, finished = finish_job(store, job, status="succeeded", result=result)
    if finished:
        store.add_event(model=job.model, type="challenger_registered", payload=result)
        logger.warning(
            "job=%d model=%s: version %d of its study was registered by an earlier "
            "worker that did not finish the job; finished",
            job.id,
            job.model,
            version.version,
        )
    return row


def fail_job(store: Store, job: JobRow, message: str, *, worker: str) -> JobRow | None:
    """Fail the job with ``message`` and announce it (``retune_failed``), unless it had
    ended otherwise (and said so) meanwhile: a crash (a MemoryError) failed its job
    unannounced, unlike the errors a study is expected to meet.

    Only while ``worker`` holds the job: ``None`` when another does (this worker
    joined the study of a worker tuning it, or the job was queued again, or taken
    over, since), whose work goes on; this worker's failure is logged, not the job's."""
    try:
        row = store.finish_job(job.id, status="failed", error=message, worker=worker)
    except ConflictError as exc:
        if exc.code == "job_claimed":
            logger.error(
                "job=%d model=%s: %s; this worker's failure is not recorded on the job, "
                "whose work goes on",
                job.id,
                job.model,
                exc.message,
            )
            return None
        if exc.code != "job_finished":
            raise
        logger.warning(
            "job=%d model=%s: %s; this worker's outcome (failed) is not recorded on it",
            job.id,
            job.model,
            exc.message,
        )
        return store.get_job(job.id)
    store.add_event(
        model=job.model, type="retune_failed", payload={"job": job.id, "error": message}
    )
    return row


def finish_job(store: Store, job: JobRow, **outcome: Any) -> tuple[JobRow, bool]:
    """Record the job's end (``outcome``: :meth:`Store.finish_job`'s keywords), unless it
    ended otherwise meanwhile (the launcher failed it as stale while this worker was
    slow to heartbeat): that end stands. Returns the job and whether this end was
    recorded."""
    try:
        return store.finish_job(job.id, **outcome), True
    except ConflictError as exc:
        if exc.code != "job_finished":
            raise
        logger.warning(
            "job=%d model=%s: %s; this worker's outcome (%s) is not recorded on it",
            job.id,
            job.model,
            exc.message,
            outcome.get("status"),
        )
        return store.get_job(job.id), False


def requeue_job(store: Store, job: JobRow, *, worker: str) -> None:
    """``worker`` was stopped: the job goes back to the queue, unless another worker has
    claimed it since."""
    if store.requeue_job(job.id, worker):
        logger.warning("job=%d model=%s: stopped, queued again", job.id, job.model)
        store.add_event(model=job.model, type="retune_interrupted", payload={"job": job.id})
