"""A job's row: its typed form (:class:`JobRow`), reading it (one job, a listing, the
count of active ones), locking it for a write, and cleaning the JSON written to it.

Every other job module (:mod:`._job_queue`, :mod:`._jobs`, :mod:`._job_cancel`) reads and
writes rows through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, func, select

from .._errors import NotFoundError
from ._events import holds_nul, storable_json
from ._schema import jobs

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[str, ...] = ("queued", "running")


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


def _clean(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    out: dict[str, Any] = storable_json(dict(value), field=field)
    return out


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
    before_id: int | None = None,
) -> list[JobRow]:
    """At most ``limit`` jobs, newest first (by id, the order they were queued in) or
    oldest first; with ``before_id`` only those of a lower id, a keyset cursor for the
    next older page."""
    if holds_nul(model):
        return []
    stmt = select(jobs)
    if before_id is not None:
        stmt = stmt.where(jobs.c.id < before_id)
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


def _locked(conn: Connection, job_id: int, states: tuple[str, ...]) -> Row[Any] | None:
    """Job ``job_id``'s row, locked for this transaction, if it is in one of ``states``."""
    stmt = select(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(states)).with_for_update()
    return conn.execute(stmt).first()


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
