"""Approvals and rollback: the stage changes governance puts rules on.

Each function runs inside the caller's transaction and writes its audit entry and event
in that same transaction, so a decision and its record land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from .._errors import ConflictError, NotFoundError
from ._audit import append_audit_in
from ._events import add_event_in
from ._registry_rows import (
    _lock_model,
    _set_stage_row,
    champion,
    check_champion,
    get_version,
    promote,
)
from ._schema import approvals, events
from ._types import VersionRow, utcnow

#: ``approvals.reason`` and ``approvals.decision_reason`` are VARCHAR(2000) (PostgreSQL
#: enforces it); the API accepts reasons up to this length.
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    id: int
    model: str
    version: int
    requested_by: str
    reason: str
    rules: tuple[str, ...]
    status: str
    decided_by: str | None
    decision_reason: str | None
    created_at: datetime
    decided_at: datetime | None
    champion_version: int | None = None  # the champion when it was requested


def request_approval(
    conn: Connection,
    model: str,
    version: int,
    *,
    requested_by: str,
    reason: str,
    rules: Sequence[str],
    expected_champion: int | None = None,
) -> ApprovalRow:
    """Record a promotion waiting for an approver; one pending request per version and
    champion. A pending request made against another champion (whose approval would be
    refused, ``champion_changed``) is closed as superseded, audited, and a new one opened."""
    _lock_model(conn, model)
    check_champion(conn, model, expected_champion)
    target = get_version(conn, model, version)
    if target.stage in ("champion", "rolled_back"):
        raise ConflictError(
            f"model {model!r} version {version} is {target.stage}; it cannot be promoted",
            code="not_promotable",
        )
    current = champion(conn, model)
    current_version = None if current is None else current.version
    pending = conn.execute(
        select(approvals).where(
            approvals.c.model == model,
            approvals.c.version == version,
            approvals.c.status == "pending",
        )
    ).first()
    if pending is not None and pending.champion_version == current_version:
        return _approval(pending)
    now = utcnow()
    approval_id = conn.execute(
        approvals.insert()
        .values(
            model=model,
            version=version,
            champion_version=current_version,
            requested_by=requested_by,
            reason=reason,
            rules=list(rules),
            status="pending",
            created_at=now,
        )
        .returning(approvals.c.id)
    ).scalar_one()
    if pending is not None:
        _supersede(conn, _approval(pending), approval_id, current_version, actor=requested_by)
    details = {"approval": approval_id, "version": version, "rules": list(rules), "reason": reason}
    append_audit_in(
        conn,
        actor=requested_by,
        action="request_approval",
        target=f"{model}/v{version}",
        details=details,
    )
    add_event_in(conn, model=model, type="approval_requested", payload=details)
    return get_approval(conn, approval_id)


def _supersede(
    conn: Connection,
    stale: ApprovalRow,
    new_id: int,
    champion_version: int | None,
    *,
    actor: str,
) -> None:
    old = "none" if stale.champion_version is None else f"v{stale.champion_version}"
    now = "none" if champion_version is None else f"v{champion_version}"
    reason = (
        f"superseded by request {new_id}: the champion changed from {old} to {now} "
        "since the request"
    )
    conn.execute(
        update(approvals)
        .where(approvals.c.id == stale.id)
        .values(status="rejected", decided_by=actor, decision_reason=reason, decided_at=utcnow())
    )
    details = {"approval": stale.id, "version": stale.version, "reason": reason}
    append_audit_in(
        conn,
        actor=actor,
        action="approval_rejected",
        target=f"{stale.model}/v{stale.version}",
        details=details,
    )
    add_event_in(conn, model=stale.model, type="approval_rejected", payload=details)


def decide_approval(
    conn: Connection, approval_id: int, *, approver: str, approve: bool, reason: str
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    """Approve (and promote, atomically) or reject. The requester may not decide."""
    current = get_approval(conn, approval_id)
    _lock_model(conn, current.model)
    current = get_approval(conn, approval_id)  # re-read under the lock
    if current.status != "pending":
        raise ConflictError(
            f"approval {approval_id} is already {current.status}", code="already_decided"
        )
    if approver == current.requested_by:
        raise ConflictError(
            f"approval {approval_id} was requested by {approver!r}; another person must decide it",
            code="same_person",
        )
    status = "approved" if approve else "rejected"
    now_champion = champion(conn, current.model)
    changed = (None if now_champion is None else now_champion.version) != current.champion_version
    if approve and changed:
        # The request's evidence was against another champion (or none: requested before
        # there was one, or before requests recorded it): close it, do not promote.
        status = "rejected"
        old = "none" if current.champion_version is None else f"v{current.champion_version}"
        new = "none" if now_champion is None else f"v{now_champion.version}"
        reason = (
            f"not promoted: the champion changed from {old} to {new} since the request ({reason})"
        )
    conn.execute(
        update(approvals)
        .where(approvals.c.id == approval_id)
        .values(
            status=status,
            decided_by=approver,
            decision_reason=_fit_reason(reason),
            decided_at=utcnow(),
        )
    )
    details = {"approval": approval_id, "version": current.version, "reason": reason}
    append_audit_in(
        conn,
        actor=approver,
        action=f"approval_{status}",
        target=f"{current.model}/v{current.version}",
        details=details,
    )
    add_event_in(conn, model=current.model, type=f"approval_{status}", payload=details)
    promoted = None
    if status == "approved":
        promoted = promote(
            conn,
            current.model,
            current.version,
            actor=approver,
            reason=f"approved request {approval_id} by {current.requested_by}: {reason}",
            approved=True,
        )
    return get_approval(conn, approval_id), promoted


def _fit_reason(reason: str) -> str:
    """``reason`` cut to the column with a closing ``…`` if it is longer: the explanation
    prepended to an approver's reason may push it past the limit. The audit entry and the
    event keep the whole text."""
    if len(reason) <= MAX_REASON_LENGTH:
        return reason
    return reason[: MAX_REASON_LENGTH - 1] + "…"


def get_approval(conn: Connection, approval_id: int) -> ApprovalRow:
    row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
    if row is None:
        raise NotFoundError(f"approval {approval_id} does not exist", code="approval_not_found")
    return _approval(row)


def list_approvals(
    conn: Connection, *, model: str | None, status: str | None, limit: int
) -> list[ApprovalRow]:
    stmt = select(approvals)
    if model is not None:
        stmt = stmt.where(approvals.c.model == model)
    if status is not None:
        stmt = stmt.where(approvals.c.status == status)
    return [_approval(r) for r in conn.execute(stmt.order_by(approvals.c.id.desc()).limit(limit))]


def rollback(
    conn: Connection,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
) -> tuple[VersionRow, VersionRow]:
    """Restore the champion the current one replaced; the current one is rolled back.
    With ``expected_champion``, only if that version is still the champion."""
    _lock_model(conn, model)
    check_champion(conn, model, expected_champion)
    current = champion(conn, model)
    if current is None:
        raise ConflictError(
            f"model {model!r} has no champion to roll back", code="no_previous_champion"
        )
    previous = _replaced_by(conn, model, current.version)
    if previous is None:
        raise ConflictError(
            f"model {model!r} version {current.version} replaced no earlier champion; "
            "there is nothing to roll back to",
            code="no_previous_champion",
        )
    restored = get_version(conn, model, previous)
    if restored.stage == "rolled_back":
        raise ConflictError(
            f"model {model!r} version {previous} was itself rolled back; promote a version "
            "explicitly instead",
            code="no_previous_champion",
        )
    now = utcnow()
    _set_stage_row(conn, model, current.version, "rolled_back", now)
    _set_stage_row(conn, model, previous, "champion", now)
    details = {"version": previous, "rolled_back": current.version, "reason": reason}
    append_audit_in(
        conn, actor=actor, action="rollback", target=f"{model}/v{previous}", details=details
    )
    add_event_in(conn, model=model, type="rolled_back", payload=details)
    return get_version(conn, model, previous), get_version(conn, model, current.version)


def _replaced_by(conn: Connection, model: str, version: int) -> int | None:
    """The champion ``version`` replaced, from its latest ``promoted`` or ``rolled_back``
    event."""
    rows = conn.execute(
        select(events.c.type, events.c.payload)
        .where(events.c.model == model, events.c.type.in_(("promoted",)))
        .order_by(events.c.id.desc())
    )
    for row in rows:
        payload: dict[str, Any] = row.payload
        if payload.get("version") == version:
            previous = payload.get("previous")
            return int(previous) if previous is not None else None
    return None


def _approval(row: Row[Any]) -> ApprovalRow:
    return ApprovalRow(
        id=int(row.id),
        model=row.model,
        version=row.version,
        requested_by=row.requested_by,
        reason=row.reason,
        rules=tuple(row.rules),
        status=row.status,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        created_at=row.created_at,
        decided_at=row.decided_at,
        champion_version=row.champion_version,
    )
