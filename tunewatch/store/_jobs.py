"""Jobs: re-tuning work handed to workers, from claim to final state.

The front of the job modules, which other store modules import from (and
``Store``'s ``JobsFront`` delegates to): this module holds a job's life once queued,
and re-exports the rest.

* :mod:`._job_rows`: a job's row (:class:`JobRow`, :data:`JobStatus`, :data:`ACTIVE`)
  and reading it: :func:`get_job`, :func:`list_jobs`, :func:`count_active`.
* :mod:`._job_queue`: queueing one, with its quota, cool-down, dedupe key, study name
  and audit entry: :func:`create_job`, :class:`JobAudit`, :func:`new_study_name`.
* here: claiming (:func:`claim_job`, :func:`requeue_job`), progress and the training
  window (:func:`update_progress`, :func:`record_window_start`,
  :func:`earliest_window_start`), heartbeats and dead workers (:func:`heartbeat`,
  :func:`requeue_stale`, :func:`requeue_crashed`) and the final state
  (:func:`finish_job`).
* :mod:`._job_cancel`: cancelling a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, select, update

from .._errors import ConflictError
from ._clock import db_now
from ._job_queue import JobAudit as JobAudit
from ._job_queue import create_job as create_job
from ._job_queue import new_study_name as new_study_name
from ._job_rows import ACTIVE as ACTIVE
from ._job_rows import JobRow as JobRow
from ._job_rows import JobStatus as JobStatus
from ._job_rows import _clean, _job
from ._job_rows import _locked as _locked
from ._job_rows import count_active as count_active
from ._job_rows import get_job as get_job
from ._job_rows import list_jobs as list_jobs
from ._schema import jobs
from ._types import utcnow

#: A finished job's ``progress.phase``, by its final status.
FINAL_PHASE = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}
#: A job's spec key: when its training window begins (:func:`record_window_start`).
WINDOW_START = "window_start"


def claim_job(
    conn: Connection, job_id: int, worker: str, *, alive_within: timedelta | None = None
) -> JobRow:
    """Mark a queued job running for ``worker``; a running one may be re-joined by any
    worker (several workers share one study). Finished jobs cannot be claimed.

    The job's ``worker`` is the one holding it: its failure fails the job, its death
    queues the job again (:func:`requeue_crashed`), and it alone queues the job again
    when stopped (:func:`requeue_job`). Without ``alive_within`` the last worker to claim
    the job holds it. With it, a job running under another worker that heartbeated
    within ``alive_within`` (by the database's clock) stays that worker's: ``worker``
    joins its study, heartbeating it too, and its own failure or death leaves the job to
    the worker holding it (a worker joining with another CV was refused and failed the
    job its first worker was tuning). One silent longer has lost its worker (dead, or
    hung): ``worker`` takes it over. Returns the job, holding worker and all."""
    job = get_job(conn, job_id)
    if job.status not in ACTIVE:
        raise ConflictError(f"job {job_id} is {job.status}", code="job_finished")
    now = db_now(conn)  # heartbeats are compared across hosts: by the database's clock
    if alive_within is not None:
        joined = conn.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.status == "running",
                jobs.c.worker.is_not(None),
                jobs.c.worker != worker,
                jobs.c.heartbeat_at >= db_now(conn, -alive_within),
            )
            .values(heartbeat_at=now)
        )
        if joined.rowcount:
            return get_job(conn, job_id)
    values: dict[str, Any] = {"status": "running", "heartbeat_at": now, "worker": worker}
    if job.started_at is None:
        values["started_at"] = now
    claimed = conn.execute(  # not if it was finished (or failed as stale) meanwhile
        update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE)).values(**values)
    )
    if not claimed.rowcount:
        raise ConflictError(f"job {job_id} was finished meanwhile", code="job_finished")
    return get_job(conn, job_id)


def requeue_job(conn: Connection, job_id: int, worker: str) -> bool:
    """Put a running job back in the queue when ``worker``, the last to claim it, was
    stopped (the daemon shutting down): the next launcher resumes its study. False when
    the job is not running or another worker has claimed it since. Its progress says
    ``phase: queued`` (it said ``tuning`` until a worker resumed it), the rest kept."""
    row = _locked(conn, job_id, ("running",))
    if row is None or row.worker != worker:
        return False
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.worker == worker)
        .values(status="queued", worker=None, heartbeat_at=None, progress=_queued_progress(row))
    )
    return bool(conn.execute(stmt).rowcount)


def _queued_progress(row: Row[Any]) -> dict[str, Any]:
    """``row``'s progress as the job goes back to the queue: ``phase: queued``."""
    return _clean({**row.progress, "phase": "queued"}, "progress")


#: Progress writes another writer moved the row under, between their read and their
#: write: read again, and after these many, merge under the row's lock.
_PROGRESS_ATTEMPTS = 3

#: A transaction of the store's: a read (``Store._read``) or a write (``Store._tx``).
Transaction = Callable[[], AbstractContextManager[Connection]]


def update_progress(
    read: Transaction,
    write: Transaction,
    job_id: int,
    progress: Mapping[str, Any],
    *,
    spec: Mapping[str, Any] | None = None,
) -> None:
    """Merge ``progress`` (and ``spec``, given) into a running job's: a key not given keeps
    its value (each write replaced the whole object, and the ``rows`` and
    ``dataset_version`` written as tuning began were gone at the next report). A finished
    (or queued) job's is left as it is: a worker that joined the study reported on after
    another had finished the job, and its progress contradicted the job's result. The
    write refreshes the job's ``heartbeat_at`` too.

    The row is read, and the JSON cleaned and merged, in a read transaction; the write
    transaction holds one ``UPDATE``, which writes only while the row's ``progress`` (and
    ``spec``) are still the text read, so concurrent writers never lose each other's
    keys. One another writer moved is read again, and after :data:`_PROGRESS_ATTEMPTS`
    tries merged under the row's lock. Tuning workers write it, at a low priority: read,
    merged and written in one transaction, a worker descheduled inside it held the write
    lock (on SQLite the database's one, that every writer, the scoring log's too, waits
    for) for seconds."""
    given = {"progress": _clean(progress, "progress")}
    if spec is not None:
        given["spec"] = _clean(spec, "spec")
    for _ in range(_PROGRESS_ATTEMPTS):
        with read() as conn:
            read_back = select(
                *(jobs.c[name] for name in given),
                *(cast(jobs.c[name], Text).label(f"{name}_text") for name in given),
            ).where(jobs.c.id == job_id, jobs.c.status == "running")
            row = conn.execute(read_back).first()
        if row is None:
            return
        stored = row._mapping
        values = {name: {**stored[name], **value} for name, value in given.items()}
        unmoved = [cast(jobs.c[name], Text) == stored[f"{name}_text"] for name in given]
        with write() as conn:
            stmt = (
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "running", *unmoved)
                .values(**values, heartbeat_at=db_now(conn))
            )
            if conn.execute(stmt).rowcount:
                return
    with write() as conn:
        locked = _locked(conn, job_id, ("running",))
        if locked is None:
            return
        values = {name: {**locked._mapping[name], **value} for name, value in given.items()}
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == "running")
            .values(**values, heartbeat_at=db_now(conn))
        )


def record_window_start(conn: Connection, job_id: int, start: datetime) -> None:
    """Record in running job ``job_id``'s spec (``window_start``) when its training
    window begins, the time of its earliest request, unless a worker recorded it before:
    the first worker to read the window fixes it (every later one reads the same rows),
    and the retention purge keeps the rows from then on while the job is queued or
    running (:func:`earliest_window_start`). The row is locked from its read to its
    write."""
    row = _locked(conn, job_id, ("running",))
    if row is None or WINDOW_START in row.spec:
        return
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(spec=_clean({**row.spec, WINDOW_START: start.isoformat()}, "spec"))
    )


def earliest_window_start(conn: Connection) -> tuple[int, datetime] | None:
    """The earliest training window start (:func:`record_window_start`) of the queued and
    running jobs, with the job's id; ``None`` when none has recorded one."""
    rows = conn.execute(
        select(jobs.c.id, jobs.c.spec).where(jobs.c.status.in_(ACTIVE)).order_by(jobs.c.id)
    ).all()
    found: tuple[int, datetime] | None = None
    for job_id, spec in rows:
        value = spec.get(WINDOW_START)
        if not isinstance(value, str):
            continue
        start = datetime.fromisoformat(value)
        if found is None or start < found[1]:
            found = (int(job_id), start)
    return found


def _final_progress(row: Row[Any] | None, status: str) -> dict[str, Any] | None:
    """``row``'s progress with the ``phase`` its final ``status`` names (``done``,
    ``failed``, ``cancelled``): a succeeded job said ``exporting`` for good."""
    if row is None:
        return None
    return _clean({**row.progress, "phase": FINAL_PHASE[status]}, "progress")


def heartbeat(conn: Connection, job_id: int) -> None:
    """Mark a running job's workers alive (a finished job's last heartbeat stays)."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(heartbeat_at=db_now(conn))
    )


def _stale(conn: Connection, older_than: timedelta) -> Any:
    """Running with no heartbeat for ``older_than``, by the database's clock (which wrote
    the heartbeats): the worker's host and the leader's may disagree by minutes."""
    return (jobs.c.status == "running") & (jobs.c.heartbeat_at < db_now(conn, -older_than))


def any_stale(conn: Connection, older_than: timedelta) -> bool:
    stmt = select(jobs.c.id).where(_stale(conn, older_than)).limit(1)
    return conn.execute(stmt).first() is not None


def requeue_stale(conn: Connection, older_than: timedelta, max_crashes: int) -> list[JobRow]:
    """The running jobs whose heartbeat is older than ``older_than``: every worker of
    theirs is presumed dead (killed, out of memory, its host gone). Each is queued again
    for the next worker to resume its study, or failed once its workers have died
    ``max_crashes`` times (:func:`requeue_crashed`); returns them as they are now.

    On PostgreSQL a job whose row another transaction holds locked is skipped (``FOR
    UPDATE SKIP LOCKED``), left for a later call: a worker stopped inside its heartbeat
    holds its row until the server ends its idle transaction, and waiting for it failed
    this call, with every other stale job's requeue, at the lock timeout."""
    stmt = (
        select(jobs)
        .where(_stale(conn, older_than))
        .order_by(jobs.c.id)
        .with_for_update(skip_locked=True)  # SQLite renders none: its writer is alone
    )
    stale = [_job(r) for r in conn.execute(stmt)]
    out = []
    for job in stale:
        since = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
        error = f"worker {job.worker!r} stopped heartbeating (last {since}); presumed dead"
        row = requeue_crashed(conn, job, error=error, max_crashes=max_crashes, stale=older_than)
        if row is not None:
            out.append(row)
    return out


def requeue_crashed(
    conn: Connection,
    job: JobRow,
    *,
    error: str,
    max_crashes: int,
    stale: timedelta | None = None,
) -> JobRow | None:
    """``job``'s worker died (``error`` says how): queue the job again, its crash counted
    and ``error`` kept until it ends, or fail it with ``error`` once its workers have died
    ``max_crashes`` times. Only while the job is still running under the same worker
    (and, given ``stale``, still silent that long): ``None`` when it was claimed,
    heartbeated or finished meanwhile. Another worker may still be running its study (a
    worker that joined it, a live one too slow to heartbeat): it goes on, and the worker
    started for the queued job joins it."""
    crashes = job.crashes + 1
    where = [jobs.c.id == job.id, jobs.c.status == "running", jobs.c.crashes == job.crashes]
    where.append(jobs.c.worker.is_(None) if job.worker is None else jobs.c.worker == job.worker)
    if stale is not None:
        where.append(_stale(conn, stale))
    if crashes >= max_crashes:
        values: dict[str, Any] = {
            "status": "failed",
            "error": f"{error}\n(its workers have died {_times(crashes)}: not queued again)"[:4000],
            "finished_at": utcnow(),
            "crashes": crashes,
        }
        progress = _final_progress(_locked(conn, job.id, ("running",)), "failed")
        if progress is not None:
            values["progress"] = progress
    else:
        values = {
            "status": "queued",
            "worker": None,
            "heartbeat_at": None,
            "error": error[:4000],
            "crashes": crashes,
        }
        locked = _locked(conn, job.id, ("running",))
        if locked is not None:
            values["progress"] = _queued_progress(locked)
    if not conn.execute(update(jobs).where(*where).values(**values)).rowcount:
        return None
    return get_job(conn, job.id)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def finish_job(
    conn: Connection,
    job_id: int,
    *,
    status: JobStatus,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    replacing: tuple[str, ...] = ACTIVE,
    worker: str | None = None,
) -> JobRow:
    """A job's final state, once: a job not in one of the ``replacing`` states (by
    default: a job already finished, such as a late worker's result after the launcher
    failed the job as stale) raises ``job_finished`` and keeps its state. Given a
    ``worker``, only while that worker is the last to have claimed the job: one another
    worker claimed since raises ``job_claimed`` and keeps its state."""
    if status in ACTIVE:
        raise ValueError(f"`status` must be a final state, got {status!r}")
    stmt = update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(replacing))
    if worker is not None:
        stmt = stmt.where(jobs.c.worker == worker)
    values: dict[str, Any] = {
        "status": status,
        "result": None if result is None else _clean(result, "result"),
        "error": None if error is None else error[:4000],
        "finished_at": utcnow(),
    }
    progress = _final_progress(_locked(conn, job_id, replacing), status)
    if progress is not None:
        values["progress"] = progress
    finished = conn.execute(stmt.values(**values))
    if not finished.rowcount:
        job = get_job(conn, job_id)
        if job.status in replacing:  # so the worker differs
            raise ConflictError(
                f"job {job_id} is claimed by worker {job.worker!r}, not {worker!r}",
                code="job_claimed",
            )
        raise ConflictError(f"job {job_id} is already {job.status}", code="job_finished")
    return get_job(conn, job_id)
