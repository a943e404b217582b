"""Evaluation results and leases (the scheduler's leader lock)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, select

from .._errors import NotFoundError
from ._canonical import canonical_json
from ._clock import db_now
from ._engine import dialect_insert
from ._schema import evaluations, leases
from ._types import utcnow


@dataclass(frozen=True, slots=True)
class EvaluationRow:
    """One stored evaluation of a model over a window (``kind``: drift, decay, …)."""

    id: int
    model: str
    version: int | None
    kind: str
    status: str
    window_start: datetime | None
    window_end: datetime
    payload: dict[str, Any]
    created_at: datetime


def acquire_lease(conn: Connection, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the lease ``name`` for ``holder``; False if someone else holds it.

    A lease another holder holds unexpired is only read (no lock: a follower asks at
    every tick); otherwise one atomic upsert: insert, or update only when the lease
    expired or is ours (checked again: another candidate may have taken it since the
    read). On PostgreSQL the upsert locks the row even when its ``WHERE`` is false, so a
    follower stopped inside it held up every renewal of the leader. Expiry is set and
    checked by the database's clock: the candidates' own clocks may disagree by more than
    the lease's time to live.
    """
    held_by_another = conn.execute(
        select(leases.c.name).where(
            leases.c.name == name, leases.c.holder != holder, leases.c.expires_at > db_now(conn)
        )
    ).first()
    if held_by_another is not None:
        return False
    expires = db_now(conn, timedelta(seconds=ttl_s))
    insert = dialect_insert(conn, leases).values(name=name, holder=holder, expires_at=expires)
    stmt = insert.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={"holder": holder, "expires_at": expires},
        where=(leases.c.expires_at <= db_now(conn)) | (leases.c.holder == holder),
    ).returning(leases.c.holder)
    return conn.execute(stmt).first() is not None


def release_lease(conn: Connection, name: str, holder: str) -> None:
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


def add_evaluation(
    conn: Connection,
    *,
    model: str,
    version: int | None,
    kind: str,
    status: str,
    window_start: datetime | None,
    window_end: datetime,
    payload: Mapping[str, Any],
) -> EvaluationRow:
    clean = json.loads(canonical_json(payload))
    created = utcnow()
    row = conn.execute(
        evaluations.insert()
        .values(
            model=model,
            version=version,
            kind=kind,
            status=status,
            window_start=window_start,
            window_end=window_end,
            payload=clean,
            created_at=created,
        )
        .returning(evaluations.c.id)
    ).one()
    return EvaluationRow(
        int(row.id), model, version, kind, status, window_start, window_end, clean, created
    )


def list_evaluations(
    conn: Connection,
    *,
    model: str,
    kind: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[EvaluationRow]:
    """Newest first; ``since`` and ``until`` bound ``window_end``, both inclusive."""
    stmt = select(evaluations).where(evaluations.c.model == model)
    if kind is not None:
        stmt = stmt.where(evaluations.c.kind == kind)
    if version is not None:
        stmt = stmt.where(evaluations.c.version == version)
    if since is not None:
        stmt = stmt.where(evaluations.c.window_end >= since)
    if until is not None:
        stmt = stmt.where(evaluations.c.window_end <= until)
    stmt = stmt.order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc()).limit(limit)
    return [_row(r) for r in conn.execute(stmt)]


def get_evaluation(conn: Connection, *, model: str, evaluation_id: int) -> EvaluationRow:
    stmt = select(evaluations).where(
        evaluations.c.model == model, evaluations.c.id == evaluation_id
    )
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFoundError(
            f"model {model!r} has no evaluation {evaluation_id}", code="evaluation_not_found"
        )
    return _row(row)


def _row(r: Row[Any]) -> EvaluationRow:
    return EvaluationRow(
        int(r.id),
        r.model,
        r.version,
        r.kind,
        r.status,
        r.window_start,
        r.window_end,
        dict(r.payload),
        r.created_at,
    )
