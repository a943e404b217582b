"""The approvals table: its rows read back, a pending request closed, and the requests
past ``approvals.expire_after_days`` closed.

Reading a request fills in who else asked for it: its co-requesters are the actors of the
``request_approval`` audit entries naming it, other than its requester. Closing one
(rejected, audited, with its event) is the write a decision's refusals, a version's
move away (retired, rolled back) and its promotion without its request make;
:mod:`._governance` requests and decides approvals on top of these rows,
:mod:`._champion_rollback` closes the rolled-back version's and :mod:`._stage_changes`
the promoted version's. Each function runs inside the caller's transaction.

A request expires ``expire_after_days`` after it was made (:func:`expires_at`): its
evidence is that old, and approving it then promoted a version on evidence no one had
looked at since. Approving an expired one closes it unpromoted
(:func:`~._governance.decide_approval`, with :func:`expiry_reason`), and the leader's sweep
closes every one (:func:`close_expired_approvals`). The limit is the caller's: the store
reads no configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update

from .._errors import NotFoundError
from ._audit import append_audit_in
from ._events import add_event_in, holds_nul
from ._registry_reads import _lock_model
from ._schema import approvals, audit_entries
from ._types import utcnow

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
    #: others who asked for it while it was pending, in order (from the audit log)
    co_requesters: tuple[str, ...] = ()
    #: the deadline of the limit it was made under (``approvals.expire_after_days``), kept
    #: by the request so that every process applies it; ``None``: none then
    expires_at: datetime | None = None


def close_pending_approvals(
    conn: Connection, model: str, version: int, *, stage: str, actor: str, reason: str
) -> None:
    """Close (rejected, by ``actor``) the pending approvals of ``version``, which has just
    moved to ``stage`` (retired or rolled back) other than by its own promotion, each
    audited and with its event as a superseded one is: approved later, it promoted the
    version an operator had pulled. ``reason`` is the move's."""
    why = f"not promoted: v{version} was {stage_word(stage)} since the request ({reason})"
    _close_pending(conn, model, version, actor=actor, reason=why)


def close_promoted_approvals(
    conn: Connection, model: str, version: int, *, actor: str, reason: str
) -> None:
    """Close (rejected, by ``actor``: the table holds no other closed status) the pending
    approvals of ``version``, which ``actor`` has just promoted without them (a rule that
    made it wait was since widened), each audited and with its event as a superseded one
    is; ``reason`` is the promotion's. Left pending, approving one later was refused as
    a champion change (the version it would promote replaced the champion it was
    requested against) and stored as rejected then."""
    why = f"superseded: v{version} was promoted without this request ({reason})"
    _close_pending(conn, model, version, actor=actor, reason=why)


def expires_at(created_at: datetime, expire_after_days: float | None) -> datetime | None:
    """When a request made at ``created_at`` expires; ``None`` without a limit."""
    if expire_after_days is None:
        return None
    return created_at + timedelta(days=expire_after_days)


def limit_of(approval: ApprovalRow, expire_after_days: float | None) -> float | None:
    """The limit ``approval`` is held to, in days: the stricter of the one it was made
    under (stamped on it: a process deciding under another config, or none, still applies
    it) and ``expire_after_days``, the caller's; ``None``: neither has one."""
    stamped = None
    if approval.expires_at is not None:
        stamped = (approval.expires_at - approval.created_at) / timedelta(days=1)
    limits = [days for days in (stamped, expire_after_days) if days is not None]
    return min(limits) if limits else None


def deadline_of(approval: ApprovalRow, expire_after_days: float | None) -> datetime | None:
    """When ``approval`` expires: the earlier of its stamped deadline and
    ``expire_after_days`` after it was made (see :func:`limit_of`); ``None``: never."""
    deadlines = [approval.expires_at, expires_at(approval.created_at, expire_after_days)]
    return min((d for d in deadlines if d is not None), default=None)


def expiry_reason(
    approval: ApprovalRow, *, expire_after_days: float | None, now: datetime, reason: str
) -> str | None:
    """Why ``approval`` may no longer be approved at ``now`` (it expired: past
    :func:`deadline_of`), wrapping ``reason``; ``None`` when it may."""
    expired = expired_since(approval, expire_after_days=expire_after_days, now=now)
    return None if expired is None else f"not promoted: {expired} ({reason})"


def expired_since(
    approval: ApprovalRow, *, expire_after_days: float | None, now: datetime
) -> str | None:
    """ "requested 40 days ago; approvals.expire_after_days is 30" when ``approval`` had
    expired by ``now`` (past :func:`deadline_of`), or the same naming the limit stamped on
    it when that one applied; ``None`` when it had not, or has no deadline."""
    deadline = deadline_of(approval, expire_after_days)
    if deadline is None or now < deadline:
        return None
    age = (now - approval.created_at) / timedelta(days=1)
    limit = limit_of(approval, expire_after_days)
    if expire_after_days is None or (limit is not None and limit < expire_after_days):
        # the deadline stamped on it, not the caller's limit: name the one that applied
        return (
            f"requested {_days(age)} days ago; past the {_days(limit)}-day limit it was made "
            "under (approvals.expire_after_days then)"
        )
    return f"requested {_days(age)} days ago; approvals.expire_after_days is {_days(limit)}"


def _days(days: float | None) -> str:
    """A count of days as a message says it: to a tenth, without a trailing ``.0``."""
    return f"{days:.1f}".removesuffix(".0")


def close_expired_approvals(
    conn: Connection, *, expire_after_days: float | None, actor: str, now: datetime
) -> list[ApprovalRow]:
    """Close (rejected, by ``actor``) every pending approval that expired by ``now``: made
    at least ``expire_after_days`` before, or past the deadline stamped on it (see
    :func:`limit_of`), each audited and with its event as a superseded one is, its reason
    :func:`expiry_reason`'s around the request's own; the closed ones, oldest first. Each
    model is locked before its requests are read again, as a decision locks it: a request
    approved meanwhile is not closed over its approval."""
    expired = approvals.c.expires_at <= now
    if expire_after_days is not None:
        expired = or_(expired, approvals.c.created_at <= now - timedelta(days=expire_after_days))
    models = conn.execute(
        select(approvals.c.model).where(approvals.c.status == "pending", expired).distinct()
    ).scalars()
    closed: list[int] = []
    for model in sorted(models):
        _lock_model(conn, model)
        rows = conn.execute(
            select(approvals)
            .where(approvals.c.model == model, approvals.c.status == "pending", expired)
            .order_by(approvals.c.id)
        ).all()
        for approval in _approvals(conn, rows):
            why = expiry_reason(
                approval, expire_after_days=expire_after_days, now=now, reason=approval.reason
            )
            assert why is not None  # read as past its deadline
            close_approval(conn, approval.id, model, approval.version, actor=actor, reason=why)
            closed.append(approval.id)
    return sorted((get_approval(conn, i) for i in closed), key=lambda a: (a.created_at, a.id))


def _close_pending(conn: Connection, model: str, version: int, *, actor: str, reason: str) -> None:
    pending = conn.execute(
        select(approvals.c.id).where(
            approvals.c.model == model,
            approvals.c.version == version,
            approvals.c.status == "pending",
        )
    ).scalars()
    for approval_id in list(pending):
        close_approval(conn, approval_id, model, version, actor=actor, reason=reason)


def close_approval(
    conn: Connection, approval_id: int, model: str, version: int, *, actor: str, reason: str
) -> None:
    """Reject pending approval ``approval_id`` for ``reason`` (cut to the column; the
    audit entry and the event keep it whole), audited, with its event."""
    conn.execute(
        update(approvals)
        .where(approvals.c.id == approval_id)
        .values(
            status="rejected",
            decided_by=actor,
            decision_reason=fit_reason(reason),
            decided_at=utcnow(),
        )
    )
    details = {"approval": approval_id, "version": version, "reason": reason}
    append_audit_in(
        conn, actor=actor, action="approval_rejected", target=f"{model}/v{version}", details=details
    )
    add_event_in(conn, model=model, type="approval_rejected", payload=details)


def stage_word(stage: str) -> str:
    """A stage as a message says it (``rolled_back``: ``rolled back``)."""
    return stage.replace("_", " ")


def fit_reason(reason: str) -> str:
    """``reason`` cut to the column with a closing ``…`` if it is longer: the explanation
    prepended to an approver's reason may push it past the limit, and a requester's
    reason is bounded only where it enters (the API, the command line). The audit entry
    and the event keep the whole text."""
    if len(reason) <= MAX_REASON_LENGTH:
        return reason
    return reason[: MAX_REASON_LENGTH - 1] + "…"


def get_approval(conn: Connection, approval_id: int) -> ApprovalRow:
    row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
    if row is None:
        raise NotFoundError(f"approval {approval_id} does not exist", code="approval_not_found")
    return approval_of(conn, row)


def list_approvals(
    conn: Connection,
    *,
    model: str | None,
    status: str | None,
    limit: int,
    version: int | None = None,
    before_id: int | None = None,
) -> list[ApprovalRow]:
    """At most ``limit`` approval requests, newest first (by id, the order they were
    made in); with ``before_id`` only those of a lower id, a keyset cursor for the next
    older page."""
    if holds_nul(model):
        return []
    stmt = select(approvals)
    if before_id is not None:
        stmt = stmt.where(approvals.c.id < before_id)
    if model is not None:
        stmt = stmt.where(approvals.c.model == model)
    if version is not None:
        stmt = stmt.where(approvals.c.version == version)
    if status is not None:
        stmt = stmt.where(approvals.c.status == status)
    return _approvals(conn, conn.execute(stmt.order_by(approvals.c.id.desc()).limit(limit)).all())


def approval_of(conn: Connection, row: Row[Any]) -> ApprovalRow:
    """One ``approvals`` row, with its co-requesters."""
    [approval] = _approvals(conn, [row])
    return approval


def _approvals(conn: Connection, rows: Sequence[Row[Any]]) -> list[ApprovalRow]:
    """The rows, each with its co-requesters: the actors of the ``request_approval`` audit
    entries naming it, other than its requester (one query for all the rows)."""
    asked: dict[int, list[str]] = {}
    targets = sorted({f"{row.model}/v{row.version}" for row in rows})
    if targets:
        entries = conn.execute(
            select(audit_entries.c.actor, audit_entries.c.details)
            .where(
                audit_entries.c.action == "request_approval",
                audit_entries.c.target.in_(targets),
            )
            .order_by(audit_entries.c.id)
        )
        for actor, details in entries:
            approval = details.get("approval") if isinstance(details, dict) else None
            if isinstance(approval, int) and actor not in asked.setdefault(approval, []):
                asked[approval].append(actor)
    return [
        _row(row, tuple(a for a in asked.get(int(row.id), ()) if a != row.requested_by))
        for row in rows
    ]


def _row(row: Row[Any], co_requesters: tuple[str, ...]) -> ApprovalRow:
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
        co_requesters=co_requesters,
        expires_at=row.expires_at,
    )
