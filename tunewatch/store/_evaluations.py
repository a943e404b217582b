"""Evaluation results and leases (the scheduler's leader lock, imports' turns)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, case, delete, func, or_, select, update

from .._errors import ConflictError, NotFoundError
from ._canonical import canonical_json
from ._clock import db_now
from ._engine import dialect_insert
from ._schema import evaluations, leases
from ._types import HeldLease, utcnow


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


def renew_lease(conn: Connection, name: str, holder: str, ttl_s: float) -> bool:
    """Extend the lease ``name`` by ``ttl_s`` from now, only while ``holder`` holds it
    unexpired; False when it does not (another took it, it lapsed, or it was released),
    and nothing changes. Unlike :func:`acquire_lease`, which takes a lapsed lease again, a
    holder that renews learns it lost the lease: whoever held it meanwhile may have done
    the work the holder planned (an import registering the same versions). Expiry is the
    database's clock, as there."""
    renewed = conn.execute(
        update(leases)
        .where(
            leases.c.name == name,
            leases.c.holder == holder,
            leases.c.expires_at > db_now(conn),
        )
        .values(expires_at=db_now(conn, timedelta(seconds=ttl_s)))
        .returning(leases.c.name)
    )
    return renewed.first() is not None


def check_lease(conn: Connection, lease: HeldLease) -> None:
    """Extend ``lease`` in the caller's transaction, or refuse the transaction's writes
    (``ConflictError`` ``lease_lapsed``) when its holder no longer holds it unexpired: a
    write fenced by it commits only while the lease is held. Its row stays locked until
    the transaction ends, so a holder taking it meanwhile waits and then finds it held.
    A renewal just before the write leaves a window (a process stopped between the two,
    past the time to live) that this closes."""
    if not renew_lease(conn, lease.name, lease.holder, lease.ttl_s):
        raise ConflictError(
            f"the lease {lease.name!r} of {lease.holder!r} lapsed, was released or was "
            "taken by another holder before this write committed: nothing was written",
            code="lease_lapsed",
        )


def lease_holder(conn: Connection, name: str) -> str | None:
    """Who holds the lease ``name`` (expired or not), or ``None``."""
    holder: str | None = conn.execute(
        select(leases.c.holder).where(leases.c.name == name)
    ).scalar_one_or_none()
    return holder


def release_lease(conn: Connection, name: str, holder: str) -> None:
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


@dataclass(frozen=True, slots=True)
class NewEvaluation:
    """An evaluation to store (:func:`add_evaluations`): an :class:`EvaluationRow` but
    for the id and time the store gives it."""

    model: str
    version: int | None
    kind: str
    status: str
    window_start: datetime | None
    window_end: datetime
    payload: Mapping[str, Any]


def add_evaluations(conn: Connection, new: Sequence[NewEvaluation]) -> list[EvaluationRow]:
    """Store ``new`` in order, stamped with one time (the caller's transaction: a run's
    kinds are stored together or not at all)."""
    created = utcnow()
    return [
        add_evaluation(
            conn,
            model=e.model,
            version=e.version,
            kind=e.kind,
            status=e.status,
            window_start=e.window_start,
            window_end=e.window_end,
            payload=e.payload,
            created=created,
        )
        for e in new
    ]


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
    created: datetime | None = None,
) -> EvaluationRow:
    clean = json.loads(canonical_json(payload))
    created = utcnow() if created is None else created
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


def record_policy_decisions(conn: Connection, decisions: Mapping[int, Mapping[str, Any]]) -> None:
    """Add to each evaluation ``id`` of ``decisions`` what the policy reading its kind
    decided (its payload's ``policy`` key), in the caller's transaction: the verdicts are
    stored before the policies decide, which read them with the history they extend. A
    row the policies never reached (the process stopped in between) keeps no ``policy``."""
    for evaluation_id, decision in decisions.items():
        row = conn.execute(
            select(evaluations.c.payload).where(evaluations.c.id == evaluation_id)
        ).first()
        if row is None:  # purged meanwhile (retention)
            continue
        payload = {**dict(row.payload), "policy": json.loads(canonical_json(decision))}
        conn.execute(
            update(evaluations).where(evaluations.c.id == evaluation_id).values(payload=payload)
        )


#: The kind whose rows measure several versions: every version that served in the window
#: (``payload["versions"]``, keyed by the version as text), stored under the champion.
TELEMETRY = "telemetry"


def list_evaluations(
    conn: Connection,
    *,
    model: str,
    kind: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 1000,
) -> list[EvaluationRow]:
    """Newest window first (by ``window_end``, ties by id), for display; ``since`` and
    ``until`` bound ``window_end``, both inclusive. ``window_end`` is the evaluating
    host's clock: after it stepped back (NTP correcting a clock that ran fast, a failover
    to a host whose clock is behind) the runs stored since list below the ones before
    them. What decides reads :func:`recent_evaluations` instead, the order the runs stored
    them in.

    ``version`` selects the evaluations of that version, which per kind means: for
    ``telemetry``, the rows that measured it (``payload["versions"]`` holds it: a run
    measures every version that served in its window, challengers included, and stores
    the row under the champion of the run); for every other kind, the rows stored under
    it (``version``: the champion the run evaluated). The rows are returned whole, the
    other versions' figures included.

    ``before_id`` is a keyset cursor: only the rows listed after evaluation ``before_id``
    of ``model`` (an older window, or the same window and a lower id), of any kind. Ids
    ascend in append order, but the listing runs by window, which a run may write out of
    order, so the cursor is the row's place in the listing, not its id alone. A cursor
    that is no evaluation of ``model`` raises :class:`NotFoundError`."""
    stmt = select(evaluations).where(evaluations.c.model == model)
    if kind is not None:
        stmt = stmt.where(evaluations.c.kind == kind)
    if version is not None:
        stmt = stmt.where(_of_version(conn, version, kind))
    if since is not None:
        stmt = stmt.where(evaluations.c.window_end >= since)
    if until is not None:
        stmt = stmt.where(evaluations.c.window_end <= until)
    if before_id is not None:
        end = conn.execute(
            select(evaluations.c.window_end).where(
                evaluations.c.model == model, evaluations.c.id == before_id
            )
        ).scalar_one_or_none()
        if end is None:
            raise NotFoundError(
                f"model {model!r} has no evaluation {before_id} (`before_id` names the last "
                "evaluation of the page before)",
                code="evaluation_not_found",
            )
        stmt = stmt.where(
            evaluations.c.window_end <= end,  # the indexes' bound; the rest filters ties
            or_(
                evaluations.c.window_end < end,
                and_(evaluations.c.window_end == end, evaluations.c.id < before_id),
            ),
        )
    stmt = stmt.order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc()).limit(limit)
    return [_row(r) for r in conn.execute(stmt)]


def recent_evaluations(
    conn: Connection, *, model: str, kind: str, before_id: int | None = None, limit: int
) -> list[EvaluationRow]:
    """``model``'s evaluations of ``kind``, the one stored last first: in append order (by
    id), whatever the clocks of the hosts that ran them said. "The newest verdict" and a
    policy's streak read this order; :func:`list_evaluations` runs by ``window_end``, the
    evaluating host's clock, under which every run after that clock stepped back lists
    below the runs before. ``before_id`` is a keyset cursor: only the rows stored before
    evaluation ``before_id``.

    The ids are picked first, then their rows read: no index runs by (model, kind, id).
    Read whole, SQLite sorted every row of the kind, payloads and all (1.7 s a query at a
    year of 5-minute runs); the ids alone come from its (model, kind, window_end) index,
    which holds them (as rowids), in tens of milliseconds. An index on (model, kind, id)
    would bound the read by ``limit``."""
    ids = select(evaluations.c.id).where(evaluations.c.model == model, evaluations.c.kind == kind)
    if before_id is not None:
        ids = ids.where(evaluations.c.id < before_id)
    ids = ids.order_by(evaluations.c.id.desc()).limit(limit)
    stmt = select(evaluations).where(evaluations.c.id.in_(ids)).order_by(evaluations.c.id.desc())
    return [_row(r) for r in conn.execute(stmt)]


def _of_version(conn: Connection, version: int, kind: str | None) -> ColumnElement[bool]:
    """The rows ``version`` selects (see :func:`list_evaluations`)."""
    stored_under = evaluations.c.version == version
    if kind is not None and kind != TELEMETRY:
        return stored_under
    measured = _measured(conn, version)
    if kind == TELEMETRY:
        return measured
    return or_(and_(evaluations.c.kind != TELEMETRY, stored_under), measured)


def _measured(conn: Connection, version: int) -> ColumnElement[bool]:
    """Telemetry rows whose ``payload["versions"]`` holds ``version``, tested in the
    database. SQLAlchemy's JSON indexing does not test a key on both backends: on SQLite
    it quotes the extracted value, and ``json_quote(NULL)`` is the text ``null``, never
    NULL; on PostgreSQL a path (``#>``) indexes an array by the key's digits. So SQLite's
    ``json_type`` (NULL when the path is absent) and PostgreSQL's ``->`` by text key (NULL
    when absent, or not an object). Only telemetry rows' payloads are read (a ``CASE``
    evaluates its branch only for the rows its condition selects): PostgreSQL fails a
    query that reads a ``json`` holding a NUL escape anywhere, which another kind's
    payload might; a telemetry payload holds numbers and digests."""
    if conn.dialect.name == "sqlite":
        found: ColumnElement[Any] = func.json_type(evaluations.c.payload, f'$.versions."{version}"')
    else:
        found = evaluations.c.payload["versions"][str(version)]
    return case((evaluations.c.kind == TELEMETRY, found)).is_not(None)


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
