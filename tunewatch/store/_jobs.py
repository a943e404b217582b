"""Jobs: re-tuning work handed to workers."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Row, String, func, select, update

from .._errors import ConflictError, NotFoundError
from ._audit import append_audit_in
from ._clock import db_now
from ._engine import dialect_insert
from ._events import holds_nul, storable_json
from ._schema import jobs, model_versions
from ._types import utcnow

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[str, ...] = ("queued", "running")
#: A finished job's ``progress.phase``, by its final status.
FINAL_PHASE = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}
#: A job's spec key: when its training window begins (:func:`record_window_start`).
WINDOW_START = "window_start"
_JOBS_LOCK = 0x6A6F6273  # "jobs": the advisory lock key that serialises quota checks
# (its own: migrations hold "tune", and every quota check waited out a migration)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    model: str
    kind: str
    status: str
    trigger: dict[str, Any]
    dedupe_key: str | None
    spec: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    crashes: int = 0  # the times its workers died under it


@dataclass(frozen=True, slots=True)
class JobAudit:
    """The audit entry :func:`create_job` appends in the job's transaction: by ``actor``,
    ``action`` on ``target``, with the ``details`` given the job and whether it was
    created (``False``: the job queued before with the same dedupe key)."""

    actor: str
    action: str
    target: str
    details: Callable[[JobRow, bool], Mapping[str, Any]]


def new_study_name(model: str, job_id: int) -> str:
    """A new job's Optuna study name, ``{model}-job{id}-{8 hex digits}``. Job ids number
    per store: the random part keeps the study the job's own in an Optuna storage other
    stores use too (staging and prod sharing one, a store recreated or restored from a
    backup beside the old one), whose job of the same number it joined otherwise. The
    model's name is cut to fit a version row's ``study``, which records it."""
    suffix = f"-job{job_id}-{secrets.token_hex(4)}"
    column = model_versions.c.study.type
    assert isinstance(column, String) and column.length is not None
    return model[: column.length - len(suffix)] + suffix


def _clean(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    out: dict[str, Any] = storable_json(dict(value), field=field)
    return out


def create_job(
    conn: Connection,
    *,
    model: str,
    kind: str,
    trigger: Mapping[str, Any],
    spec: Mapping[str, Any],
    dedupe_key: str | None = None,
    max_active: int | None = None,
    cooldown: timedelta | None = None,
    audit: JobAudit | None = None,
) -> tuple[JobRow, bool]:
    """Queue a job; with ``dedupe_key``, a second call returns the first job and False.

    With ``max_active``, the job is refused (``ConflictError``, code ``quota``) when that
    many jobs are already queued or running; with ``cooldown``, when a job of the model
    was queued less than that long ago (code ``cooldown``). Both are checked and the job
    inserted in one serialised step (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
    advisory lock on PostgreSQL), so simultaneous triggers cannot overshoot either.

    A job's queue time is the database's clock, and the cool-down is measured on it: the
    host queueing a job and the host deciding the next may be minutes apart (two hosts 10
    minutes apart ended a 5-minute cool-down the moment the slow one queued a job).

    A new job's ``spec`` records its study's name (``study``, :func:`new_study_name`),
    so every worker of the job, and every resumption, tunes the same study.

    With ``audit``, its entry is appended in the same transaction, for the job returned
    (new or found by its dedupe key): either both are written or neither is, so a caller
    told the write failed has queued nothing (the job was queued, then its audit append
    failed waiting for the chain's head, and the caller's retry queued a second job). A
    refused job (quota, cool-down) appends nothing: the caller audits that on its own."""
    job, created = _queue(
        conn,
        model=model,
        kind=kind,
        trigger=trigger,
        spec=spec,
        dedupe_key=dedupe_key,
        max_active=max_active,
        cooldown=cooldown,
    )
    if audit is not None:
        append_audit_in(
            conn,
            actor=audit.actor,
            action=audit.action,
            target=audit.target,
            details=audit.details(job, created),
        )
    return job, created


def _queue(
    conn: Connection,
    *,
    model: str,
    kind: str,
    trigger: Mapping[str, Any],
    spec: Mapping[str, Any],
    dedupe_key: str | None,
    max_active: int | None,
    cooldown: timedelta | None,
) -> tuple[JobRow, bool]:
    """:func:`create_job`'s job: the one queued now (``True``) or before with
    ``dedupe_key`` (``False``)."""
    if max_active is not None or cooldown is not None:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_JOBS_LOCK)))
        if dedupe_key is not None:
            existing = conn.execute(
                select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key)
            ).scalar_one_or_none()
            if existing is not None:
                return get_job(conn, int(existing)), False
    if cooldown is not None:
        recent = conn.execute(
            select(jobs.c.id, jobs.c.created_at)
            .where(jobs.c.model == model, jobs.c.created_at >= db_now(conn, -cooldown))
            .order_by(jobs.c.id.desc())
            .limit(1)
        ).first()
        if recent is not None:
            raise ConflictError(
                f"cooling down: job {recent.id} of {model!r} was queued at "
                f"{recent.created_at:%Y-%m-%d %H:%M:%S} UTC, within the cool-down",
                code="cooldown",
            )
    if max_active is not None:
        active = count_active(conn)
        if active >= max_active:
            raise ConflictError(
                f"quota: {active} tuning jobs active, at most {max_active}", code="quota"
            )
    stmt = (
        dialect_insert(conn, jobs)
        .values(
            model=model,
            kind=kind,
            status="queued",
            trigger=_clean(trigger, "trigger"),
            dedupe_key=dedupe_key,
            spec=_clean(spec, "spec"),
            progress={},
            created_at=db_now(conn),  # cool-downs compare it across hosts
        )
        .on_conflict_do_nothing(index_elements=[jobs.c.dedupe_key])
        .returning(jobs.c.id)
    )
    new_id = conn.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        study = new_study_name(model, int(new_id))
        conn.execute(
            update(jobs)
            .where(jobs.c.id == new_id)
            .values(spec=_clean({**spec, "study": study}, "spec"))
        )
        return get_job(conn, int(new_id)), True
    existing = conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key)).scalar_one()
    return get_job(conn, int(existing)), False


def get_job(conn: Connection, job_id: int) -> JobRow:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist", code="job_not_found")
    return _job(row)


def list_jobs(
    conn: Connection,
    *,
    model: str | None,
    status: str | None,
    limit: int,
    oldest_first: bool = False,
) -> list[JobRow]:
    if holds_nul(model):
        return []
    stmt = select(jobs)
    if model is not None:
        stmt = stmt.where(jobs.c.model == model)
    if status is not None:
        stmt = stmt.where(jobs.c.status == status)
    order = jobs.c.id.asc() if oldest_first else jobs.c.id.desc()
    return [_job(r) for r in conn.execute(stmt.order_by(order).limit(limit))]


def count_active(conn: Connection, model: str | None = None) -> int:
    stmt = select(func.count()).select_from(jobs).where(jobs.c.status.in_(ACTIVE))
    if model is not None:
        stmt = stmt.where(jobs.c.model == model)
    return int(conn.execute(stmt).scalar_one())


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
    the job is not running or another worker has claimed it since."""
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.worker == worker)
        .values(status="queued", worker=None, heartbeat_at=None)
    )
    return bool(conn.execute(stmt).rowcount)


def update_progress(
    conn: Connection,
    job_id: int,
    progress: Mapping[str, Any],
    *,
    spec: Mapping[str, Any] | None = None,
) -> None:
    """Merge ``progress`` (and ``spec``, given) into a running job's: a key not given keeps
    its value (each write replaced the whole object, and the ``rows`` and
    ``dataset_version`` written as tuning began were gone at the next report). A finished
    (or queued) job's is left as it is: a worker that joined the study reported on after
    another had finished the job, and its progress contradicted the job's result. Read and
    written in the caller's transaction, the row locked (``FOR UPDATE`` on PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` serialises writers), so concurrent writers never lose
    each other's keys."""
    row = _locked(conn, job_id, ("running",))
    if row is None:
        return
    values: dict[str, Any] = {
        "progress": _clean({**row.progress, **progress}, "progress"),
        "heartbeat_at": db_now(conn),
    }
    if spec is not None:
        values["spec"] = _clean({**row.spec, **spec}, "spec")
    conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running").values(**values)
    )


def record_window_start(conn: Connection, job_id: int, start: datetime) -> None:
    """Record in running job ``job_id``'s spec (``window_start``) when its training
    window begins, the time of its earliest request, unless a worker recorded it before:
    the first worker to read the window fixes it (every later one reads the same rows),
    and the retention purge keeps the rows from then on while the job is queued or
    running (:func:`earliest_window_start`). The row is locked, as :func:`update_progress`
    locks it."""
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


def _locked(conn: Connection, job_id: int, states: tuple[str, ...]) -> Row[Any] | None:
    """Job ``job_id``'s row, locked for this transaction, if it is in one of ``states``."""
    stmt = select(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(states)).with_for_update()
    return conn.execute(stmt).first()


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


def _job(row: Row[Any]) -> JobRow:
    return JobRow(
        id=int(row.id),
        model=row.model,
        kind=row.kind,
        status=row.status,
        trigger=dict(row.trigger),
        dedupe_key=row.dedupe_key,
        spec=dict(row.spec),
        progress=dict(row.progress),
        result=None if row.result is None else dict(row.result),
        error=row.error,
        worker=row.worker,
        created_at=row.created_at,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
        crashes=int(row.crashes),
    )
