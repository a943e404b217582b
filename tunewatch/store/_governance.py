"""Approvals and rollback: the stage changes governance puts rules on.

Each function runs inside the caller's transaction and writes its audit entry and event
in that same transaction, so a decision and its record land together or not at all.

Who asked for an approval is read from the audit log: its requester, and each other person
whose request found it pending (their ``request_approval`` entries name it). None of them
may decide it. The bootstrap admin is one person under every name a rotation of its token
gives it (``bootstrap-admin``, ``bootstrap-admin-2`` …).

A request is for a version as it stands: retiring or rolling back the version closes its
pending requests (:func:`close_pending_approvals`), and approving one whose version was so
moved after it was requested is refused (``stage_changed``). The rollback watch returning
the previous champion it kept in shadow to retired (``approvals_kept``) is no such move:
the version is back where it was, and a request to promote it stands.

A rollback restores the champion the current one replaced, unless an operator pulled it
since (:func:`find_pull`: retired it after the promotion, "never serve it again"); the
daemon's own moves (the demotion at the promotion, the rollback watch lending it to shadow
and returning it) pull nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from .._errors import ConflictError, NotFoundError
from ._audit import append_audit_in
from ._events import add_event_in, holds_nul
from ._registry_rows import (
    _lock_model,
    _set_stage_row,
    champion,
    check_champion,
    check_stage,
    get_version,
    promote,
)
from ._schema import approvals, audit_entries, events
from ._types import VersionRow, utcnow

#: ``approvals.reason`` and ``approvals.decision_reason`` are VARCHAR(2000) (PostgreSQL
#: enforces it); the API accepts reasons up to this length.
MAX_REASON_LENGTH = 2000

#: The admin token the daemon stores from ``TUNEWATCH_ADMIN_TOKEN``; changing the variable
#: stores the new one as ``bootstrap-admin-2``, ``-3`` … (``BOOTSTRAP_NAME`` matches them
#: all): one person, whoever holds the variable, under every one of those names.
BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"
BOOTSTRAP_NAME = re.compile(re.escape(BOOTSTRAP_TOKEN_NAME) + r"(-[0-9]+)?")


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


def person(actor: str) -> str:
    """Who ``actor`` is to the same-person rule: the bootstrap admin is one person under
    each of its token's names; any other name is its own person."""
    return BOOTSTRAP_TOKEN_NAME if BOOTSTRAP_NAME.fullmatch(actor) else actor


def request_approval(
    conn: Connection,
    model: str,
    version: int,
    *,
    requested_by: str,
    reason: str,
    rules: Sequence[str],
    expected_champion: int | None = None,
    expected_stage: str | None = None,
) -> ApprovalRow:
    """Record a promotion waiting for an approver; one pending request per version and
    champion. Another person asking for it is audited and recorded as one of its
    requesters (none of whom may decide it), and gets the pending request back. A pending
    request made against another champion (whose approval would be refused,
    ``champion_changed``) is closed as superseded, audited, and a new one opened. With
    ``expected_champion`` and ``expected_stage``, nothing is requested unless that
    version is still the champion (``champion_changed``) and ``version`` still in that
    stage (``stage_changed``). ``reason`` is cut to the column (the audit entry and the
    event keep it whole)."""
    _lock_model(conn, model)
    check_champion(conn, model, expected_champion)
    target = get_version(conn, model, version)
    check_stage(target, expected_stage)
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
        found = _approval(conn, pending)
        if person(requested_by) not in _requesters(found):
            _record_request(conn, found.id, model, version, requested_by, reason, rules)
            return get_approval(conn, found.id)
        return found
    now = utcnow()
    approval_id = conn.execute(
        approvals.insert()
        .values(
            model=model,
            version=version,
            champion_version=current_version,
            requested_by=requested_by,
            reason=_fit_reason(reason),
            rules=list(rules),
            status="pending",
            created_at=now,
        )
        .returning(approvals.c.id)
    ).scalar_one()
    if pending is not None:
        stale = _approval(conn, pending)
        _supersede(conn, stale, approval_id, current_version, actor=requested_by)
    _record_request(conn, approval_id, model, version, requested_by, reason, rules)
    return get_approval(conn, approval_id)


def _record_request(
    conn: Connection,
    approval_id: int,
    model: str,
    version: int,
    requested_by: str,
    reason: str,
    rules: Sequence[str],
) -> None:
    """Audit ``requested_by`` asking for approval ``approval_id``, which makes them one of
    its requesters, and add the event."""
    details = {"approval": approval_id, "version": version, "rules": list(rules), "reason": reason}
    append_audit_in(
        conn,
        actor=requested_by,
        action="request_approval",
        target=f"{model}/v{version}",
        details=details,
    )
    add_event_in(conn, model=model, type="approval_requested", payload=details)


def _requesters(approval: ApprovalRow) -> set[str]:
    return {person(name) for name in (approval.requested_by, *approval.co_requesters)}


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
    _close(conn, stale.id, stale.model, stale.version, actor=actor, reason=reason)


def close_pending_approvals(
    conn: Connection, model: str, version: int, *, stage: str, actor: str, reason: str
) -> None:
    """Close (rejected, by ``actor``) the pending approvals of ``version``, which has just
    moved to ``stage`` (retired or rolled back) other than by its own promotion, each
    audited and with its event as a superseded one is: approved later, it promoted the
    version an operator had pulled. ``reason`` is the move's."""
    pending = conn.execute(
        select(approvals.c.id).where(
            approvals.c.model == model,
            approvals.c.version == version,
            approvals.c.status == "pending",
        )
    ).scalars()
    why = f"not promoted: v{version} was {_stage_word(stage)} since the request ({reason})"
    for approval_id in list(pending):
        _close(conn, approval_id, model, version, actor=actor, reason=why)


def _close(
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
            decision_reason=_fit_reason(reason),
            decided_at=utcnow(),
        )
    )
    details = {"approval": approval_id, "version": version, "reason": reason}
    append_audit_in(
        conn, actor=actor, action="approval_rejected", target=f"{model}/v{version}", details=details
    )
    add_event_in(conn, model=model, type="approval_rejected", payload=details)


def _stage_word(stage: str) -> str:
    return stage.replace("_", " ")


def decide_approval(
    conn: Connection, approval_id: int, *, approver: str, approve: bool, reason: str
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    """Approve (and promote, atomically) or reject. The requester may not decide; a
    request whose version was retired or rolled back since is not approved
    (``stage_changed``)."""
    current = get_approval(conn, approval_id)
    _lock_model(conn, current.model)
    current = get_approval(conn, approval_id)  # re-read under the lock
    if current.status != "pending":
        raise ConflictError(
            f"approval {approval_id} is already {current.status}", code="already_decided"
        )
    if person(approver) in _requesters(current):
        asked = ", ".join(repr(name) for name in (current.requested_by, *current.co_requesters))
        bootstrap = person(approver) == BOOTSTRAP_TOKEN_NAME
        raise ConflictError(
            f"approval {approval_id} was requested by {asked}; {approver!r} is one of them"
            + (" (the bootstrap admin under any of its token's names)" if bootstrap else "")
            + ": another person must decide it",
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
    if status == "approved":
        _check_stage_unchanged(conn, current)
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


def _check_stage_unchanged(conn: Connection, approval: ApprovalRow) -> None:
    """Refuse (``stage_changed``) to approve a request whose version was retired or
    rolled back after it was requested: such a move closes the version's pending
    requests, but one left open by an earlier tunewatch (or a rolled-back version's,
    opened before its own promotion) would promote a version an operator had pulled. A
    version requested while retired may be promoted again; its request stands until the
    version is moved."""
    target = get_version(conn, approval.model, approval.version)
    moved = "rolled_back" if target.stage == "rolled_back" else _moved_since(conn, approval)
    if moved is None:
        return
    raise ConflictError(
        f"model {approval.model!r} version {approval.version} was {_stage_word(moved)} after "
        f"approval {approval.id} was requested (it is {_stage_word(target.stage)} now): "
        "reject the request, and request the promotion again if the version should still be "
        "promoted",
        code="stage_changed",
    )


def _moved_since(conn: Connection, approval: ApprovalRow) -> str | None:
    """The stage, other than shadow, that ``set_stage`` last moved the approval's version
    to after the request (its first ``request_approval`` entry naming it); ``None`` when it
    was not moved so. A move that kept the version's approvals (``approvals_kept``: the
    rollback watch returning the version it lent to shadow to its earlier stage) pulled
    nothing and is passed over. A request with no such entry (none was written) is judged
    by the version's stage: only a shadow's stands."""
    entries = conn.execute(
        select(audit_entries.c.action, audit_entries.c.details)
        .where(
            audit_entries.c.target == f"{approval.model}/v{approval.version}",
            audit_entries.c.action.in_(("request_approval", "set_stage")),
        )
        .order_by(audit_entries.c.id)
    )
    requested, moved = False, None
    for action, details in entries:
        found = details if isinstance(details, dict) else {}
        if action == "request_approval":
            requested = requested or found.get("approval") == approval.id
        elif requested and found.get("stage") != "shadow" and not found.get("approvals_kept"):
            moved = str(found.get("stage"))
    if requested:
        return moved
    stage = get_version(conn, approval.model, approval.version).stage
    return None if stage == "shadow" else stage


def _fit_reason(reason: str) -> str:
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
    return _approval(conn, row)


def list_approvals(
    conn: Connection,
    *,
    model: str | None,
    status: str | None,
    limit: int,
    version: int | None = None,
) -> list[ApprovalRow]:
    if holds_nul(model):
        return []
    stmt = select(approvals)
    if model is not None:
        stmt = stmt.where(approvals.c.model == model)
    if version is not None:
        stmt = stmt.where(approvals.c.version == version)
    if status is not None:
        stmt = stmt.where(approvals.c.status == status)
    return _approvals(conn, conn.execute(stmt.order_by(approvals.c.id.desc()).limit(limit)).all())


def rollback(
    conn: Connection,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
) -> tuple[VersionRow, VersionRow]:
    """Restore the champion the current one replaced; the current one is rolled back.
    With ``expected_champion``, only if that version is still the champion. Refused
    (``no_previous_champion``) when there is none, when it was rolled back, or when an
    operator pulled it after it was replaced (:func:`find_pull`; the message names who)."""
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
    pulled = _pull_of(conn, model, current.version, previous)
    if pulled is not None:
        raise ConflictError(
            f"model {model!r} version {previous} was {pulled.describe()}; a rollback does not "
            "restore a version an operator pulled: promote a version explicitly instead",
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
    close_pending_approvals(
        conn, model, current.version, stage="rolled_back", actor=actor, reason=reason
    )
    return get_version(conn, model, previous), get_version(conn, model, current.version)


def _replaced_by(conn: Connection, model: str, version: int) -> int | None:
    """The champion ``version`` replaced, from its latest ``promoted`` event."""
    rows = conn.execute(
        select(events.c.payload)
        .where(events.c.model == model, events.c.type == "promoted")
        .order_by(events.c.id.desc())
    )
    return replaced_champion((row.payload for row in rows), version)


@dataclass(frozen=True, slots=True)
class Pull:
    """A replaced champion moved by ``set_stage`` after it was replaced: pulled (an
    operator's retire, "never serve it again"), out of a rollback's reach."""

    version: int
    champion: int  # the version that replaced it
    stage: str
    actor: str
    reason: str

    def describe(self) -> str:
        """``retired by 'alice' after v2 replaced it (why)``."""
        return (
            f"{_stage_word(self.stage)} by {self.actor!r} after v{self.champion} replaced it "
            f"({self.reason})"
        )


def find_pull(
    entries: Iterable[tuple[str, str, str, Any]], model: str, champion: int, previous: int
) -> Pull | None:
    """Whether ``previous``, the champion ``champion`` replaced, was pulled since: the last
    ``set_stage`` of ``previous`` after ``champion``'s latest ``promote``, if that promotion
    replaced ``previous``. ``entries`` are ``(actor, action, target, details)`` audit
    entries, oldest first (others are passed over). A move to shadow (scored, never served:
    an operator's, or the rollback watch lending it to shadow) pulls nothing, nor does one
    that kept its approvals (``approvals_kept``: the watch returning it to retired), as
    :func:`_moved_since` reads them; the demotion at the promotion writes no ``set_stage``.
    A promotion of the pair again (the operator brought the pulled version back first)
    starts over."""
    promoted, moved = f"{model}/v{champion}", f"{model}/v{previous}"
    replaced, pull = False, None
    for actor, action, target, details in entries:
        found = details if isinstance(details, Mapping) else {}
        if action == "promote" and target == promoted:
            replaced, pull = found.get("previous") == previous, None
        elif (
            replaced
            and action == "set_stage"
            and target == moved
            and found.get("stage") != "shadow"
            and not found.get("approvals_kept")
        ):
            pull = Pull(
                version=previous,
                champion=champion,
                stage=str(found.get("stage")),
                actor=actor,
                reason=str(found.get("reason", "")),
            )
    return pull


def _pull_of(conn: Connection, model: str, champion: int, previous: int) -> Pull | None:
    """:func:`find_pull` over the audit log (under the caller's lock)."""
    rows = conn.execute(
        select(
            audit_entries.c.actor,
            audit_entries.c.action,
            audit_entries.c.target,
            audit_entries.c.details,
        )
        .where(
            audit_entries.c.target.in_((f"{model}/v{champion}", f"{model}/v{previous}")),
            audit_entries.c.action.in_(("promote", "set_stage")),
        )
        .order_by(audit_entries.c.id)
    )
    return find_pull(
        ((r.actor, r.action, r.target, r.details) for r in rows), model, champion, previous
    )


def replaced_champion(promotions: Iterable[Mapping[str, Any]], version: int) -> int | None:
    """The champion ``version`` replaced, read from the payloads of its model's
    ``promoted`` events, newest first: what a rollback of ``version`` restores (``None``:
    nothing). A caller checking that version before it rolls back reads it so too."""
    for payload in promotions:
        if payload.get("version") == version:
            previous = payload.get("previous")
            return int(previous) if previous is not None else None
    return None


def _approval(conn: Connection, row: Row[Any]) -> ApprovalRow:
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
    )
