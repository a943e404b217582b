"""Cancelling a job, and the lock that keeps a cancellation and the registration of the
job's winner apart: whichever takes the job's row first wins, the other is refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from .._errors import ConflictError, NotFoundError
from ._audit import append_audit_in
from ._events import add_event_in
from ._jobs import ACTIVE, JobRow, _final_progress, _locked, get_job
from ._schema import jobs, model_versions
from ._types import utcnow


def lock_for_registration(conn: Connection, job_id: int) -> None:
    """Lock job ``job_id``'s row for the caller's transaction, which registers the
    version its study chose, and refuse (``ConflictError`` ``job_cancelled``) when the job
    was cancelled: a cancellation landing after its worker's last check (the candidate's
    sandboxed load takes a second) registers nothing. Locked (``FOR UPDATE`` on
    PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), so a cancellation waits
    for the registration and then finds its version (:func:`cancel_job`).
    ``NotFoundError`` (``job_not_found``) for a job that does not exist."""
    status = conn.execute(
        select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if status is None:
        raise NotFoundError(f"job {job_id} does not exist", code="job_not_found")
    if status == "cancelled":
        raise ConflictError(
            f"job {job_id} was cancelled: its study registers nothing", code="job_cancelled"
        )


def _registered_version(conn: Connection, row: Row[Any]) -> int | None:
    """The version job ``row``'s study registered, if any."""
    study = row.spec.get("study")
    if not isinstance(study, str):
        return None
    version: int | None = conn.execute(
        select(model_versions.c.version).where(
            model_versions.c.model == row.model, model_versions.c.study == study
        )
    ).scalar()
    return version


def cancel_job(conn: Connection, job_id: int, *, actor: str, reason: str) -> JobRow:
    """Cancel a queued or running job for ``actor`` (``reason`` saying why): it is
    finished as ``cancelled`` — its quota slot free at once, its ``error`` naming who
    cancelled it and why —, audited as ``cancel_job`` and announced (``retune_cancelled``)
    in the same transaction. Its workers see it between trials and stop, registering
    nothing (their registration refuses a cancelled job: :func:`lock_for_registration`).
    ``NotFoundError`` (``job_not_found``) for an unknown job; ``ConflictError``
    (``job_finished``) naming the status of one already finished, which keeps it, or the
    version a running job's study has registered (its worker is finishing it as
    succeeded)."""
    row = _locked(conn, job_id, ACTIVE)
    if row is None:
        job = get_job(conn, job_id)  # NotFoundError when there is none
        raise ConflictError(
            f"job {job_id} is already {job.status}: nothing to cancel", code="job_finished"
        )
    registered = _registered_version(conn, row)
    if registered is not None:
        raise ConflictError(
            f"job {job_id} has registered version {registered} of {row.model!r} and is "
            "finishing as succeeded: nothing to cancel (retire the version instead)",
            code="job_finished",
        )
    was = str(row.status)
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE))
        .values(
            status="cancelled",
            error=f"cancelled by {actor} while {was}: {reason}"[:4000],
            finished_at=utcnow(),
            progress=_final_progress(row, "cancelled"),
        )
    )
    append_audit_in(
        conn,
        actor=actor,
        action="cancel_job",
        target=str(row.model),
        details={"job": job_id, "reason": reason, "status": was},
    )
    add_event_in(
        conn,
        model=str(row.model),
        type="retune_cancelled",
        payload={"job": job_id, "actor": actor, "reason": reason},
    )
    return get_job(conn, job_id)
