"""Approvals and rollback: the stage changes governance puts rules on.

Each function runs inside the caller's transaction and writes its audit entry and event
in that same transaction, so a decision and its record land together or not at all.

Who asked for an approval is read from the audit log: its requester, and each other person
whose request found it pending (their ``request_approval`` entries name it). None of them
may decide it. A person is one under every name a rotation of their token gives them
(:func:`person`): ``root``, ``root#2``, ``root#3`` … (``tunewatch tokens rotate``), and the
bootstrap admin under ``bootstrap-admin``, ``bootstrap-admin-2`` … (a new
``TUNEWATCH_ADMIN_TOKEN``).

A request is for a version as it stands: retiring or rolling back the version closes its
pending requests (:func:`close_pending_approvals`), and approving one whose version was so
moved after it was requested is refused (``stage_changed``). Promoting the version without
them closes them too, superseded (a rule that made it wait was widened since), and so does
a rollback restoring it as champion. The
rollback watch returning the previous champion it kept in shadow to retired
(``approvals_kept``) is no such move: the version is back where it was, and a request to
promote it stands.

A rollback restores the champion the current one replaced, unless an operator pulled it
since (:func:`find_pull`: retired it after the promotion, "never serve it again"); the
daemon's own moves (the demotion at the promotion, the rollback watch lending it to shadow
and returning it) pull nothing.

This module is the front :class:`~._front_governance.GovernanceFront` and the rest of
tunewatch import these names from, and holds the approval requests and decisions (the
same-person rule, a stale request superseded, the checks that a decision still holds);
the other parts live in one module per concern, re-exported here:

- ``_approval_rows``: :class:`ApprovalRow`, approvals read back with their co-requesters,
  a pending request closed (:func:`close_pending_approvals`), and the expired ones
  (:func:`close_expired_approvals`: ``approvals.expire_after_days``);
- ``_champion_rollback``: :func:`rollback`, and what a rollback restores or finds out of
  reach (:func:`replaced_champion`, :class:`Pull`, :func:`find_pull`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from .._errors import ConflictError
from ._approval_rows import (
    MAX_REASON_LENGTH,
    ApprovalRow,
    approval_of,
    close_approval,
    close_expired_approvals,
    close_pending_approvals,
    deadline_of,
    expired_since,
    expires_at,
    expiry_reason,
    fit_reason,
    get_approval,
    list_approvals,
    stage_word,
)
from ._audit import append_audit_in
from ._champion_rollback import Pull, find_pull, replaced_champion, rollback
from ._events import add_event_in
from ._registry_rows import _lock_model, champion, check_champion, check_stage, get_version, promote
from ._schema import approvals, audit_entries
from ._stage_changes import check_promotable
from ._types import VersionRow, utcnow

__all__ = [
    "BOOTSTRAP_NAME",
    "BOOTSTRAP_TOKEN_NAME",
    "MAX_REASON_LENGTH",
    "ROTATED_NAME",
    "ApprovalRow",
    "Pull",
    "close_expired_approvals",
    "close_pending_approvals",
    "deadline_of",
    "decide_approval",
    "find_pull",
    "get_approval",
    "list_approvals",
    "person",
    "replaced_champion",
    "request_approval",
    "rollback",
]

#: The admin token the daemon stores from ``TUNEWATCH_ADMIN_TOKEN``; changing the variable
#: stores the new one as ``bootstrap-admin-2``, ``-3`` … (``BOOTSTRAP_NAME`` matches them
#: all): one person, whoever holds the variable, under every one of those names.
BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"
BOOTSTRAP_NAME = re.compile(re.escape(BOOTSTRAP_TOKEN_NAME) + r"(-[0-9]+)?")
#: The name ``tunewatch tokens rotate`` gives a token's successor: its first name, ``#``
#: and the rotation's number from 2 in ASCII digits (``root#2``, ``root#3`` …). No one
#: else may take such a name (:func:`~._tokens.add_token` refuses every name that reads
#: as one): the rotations' own ``-<n>``, as the bootstrap admin's, could not be reserved,
#: ``team-2`` being another person's name.
ROTATED_NAME = re.compile(r"(?P<first>.+)#(?P<n>[2-9]|[1-9][0-9]+)")


def fold_token_name(name: str) -> str:
    """``name`` as the rules on token names read it: NFKC-normalised and case-folded
    (``Ｊosé``, ``JOSE`` + a combining acute → ``josé``), normalised again, since case
    folding may decompose a letter (``ǰ``) that NFKC composes."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def person(actor: str) -> str:
    """Who ``actor`` is to the same-person rule: one person under each name a rotation of
    their token gives them (``root#2`` is ``root``), the bootstrap admin under each of its
    token's names, and one person under names that read the same once case and Unicode
    forms are folded (:func:`fold_token_name`, as two tokens cannot hold such names: the
    CLI's ``--actor Test-Operator`` approved ``test-operator``'s own request)."""
    rotated = ROTATED_NAME.fullmatch(actor)
    first = actor if rotated is None else rotated["first"]
    return BOOTSTRAP_TOKEN_NAME if BOOTSTRAP_NAME.fullmatch(first) else fold_token_name(first)


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
    expire_after_days: float | None = None,
    now: datetime | None = None,
) -> ApprovalRow:
    """Record a promotion waiting for an approver; one pending request per version and
    champion. Another person asking for it is audited and recorded as one of its
    requesters (none of whom may decide it), and gets the pending request back. A pending
    request made against another champion (whose approval would be refused,
    ``champion_changed``), or that expired (made ``expire_after_days`` or more before
    ``now``, the clock's by default: its approval would be refused, ``approval_expired``),
    is closed as superseded, audited, and a new one opened. With
    ``expected_champion`` and ``expected_stage``, nothing is requested unless that
    version is still the champion (``champion_changed``) and ``version`` still in that
    stage (``stage_changed``), nor for a version that cannot be promoted, as
    :func:`~._stage_changes.promote` refuses it (``already_champion``,
    ``not_promotable``). ``reason`` is cut to the column (the audit entry and the event
    keep it whole)."""
    _lock_model(conn, model)
    target = get_version(conn, model, version)
    if expected_stage is None:  # as the promotion checks: a retry finds it done
        check_promotable(target)
    check_champion(conn, model, expected_champion)
    check_stage(target, expected_stage)
    check_promotable(target)
    current = champion(conn, model)
    current_version = None if current is None else current.version
    pending = conn.execute(
        select(approvals).where(
            approvals.c.model == model,
            approvals.c.version == version,
            approvals.c.status == "pending",
        )
    ).first()
    now = now or utcnow()
    stale = None if pending is None else approval_of(conn, pending)
    expired = None
    if stale is not None:
        expired = expired_since(stale, expire_after_days=expire_after_days, now=now)
    if stale is not None and stale.champion_version == current_version and expired is None:
        if person(requested_by) not in _requesters(stale):
            _record_request(conn, stale.id, model, version, requested_by, reason, rules)
            return get_approval(conn, stale.id)
        return stale
    approval_id = conn.execute(
        approvals.insert()
        .values(
            model=model,
            version=version,
            champion_version=current_version,
            requested_by=requested_by,
            reason=fit_reason(reason),
            rules=list(rules),
            status="pending",
            created_at=now,
            expires_at=expires_at(now, expire_after_days),
        )
        .returning(approvals.c.id)
    ).scalar_one()
    if stale is not None:
        _supersede(conn, stale, approval_id, current_version, expired, actor=requested_by)
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


def _asked_by(approval: ApprovalRow) -> str:
    """Everyone who asked for ``approval``, in order: its requester, then its
    co-requesters (``alice, bob``), as ``tunewatch approvals`` names them."""
    return ", ".join((approval.requested_by, *approval.co_requesters))


def _requesters(approval: ApprovalRow) -> set[str]:
    return {person(name) for name in (approval.requested_by, *approval.co_requesters)}


def _supersede(
    conn: Connection,
    stale: ApprovalRow,
    new_id: int,
    champion_version: int | None,
    expired: str | None,
    *,
    actor: str,
) -> None:
    """Close ``stale``, replaced by request ``new_id``: it expired (``expired`` says how
    old it was), or the champion changed since it was made."""
    old = "none" if stale.champion_version is None else f"v{stale.champion_version}"
    now = "none" if champion_version is None else f"v{champion_version}"
    why = expired or f"the champion changed from {old} to {now} since the request"
    reason = f"superseded by request {new_id}: {why}"
    close_approval(conn, stale.id, stale.model, stale.version, actor=actor, reason=reason)


def decide_approval(
    conn: Connection,
    approval_id: int,
    *,
    approver: str,
    approve: bool,
    reason: str,
    keep_previous: bool = False,
    expire_after_days: float | None = None,
    now: datetime | None = None,
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    """Approve (and promote, atomically) or reject. The requester may not decide; a
    request whose version was retired or rolled back since is not approved
    (``stage_changed``). ``keep_previous``: the promotion keeps the old champion in
    shadow (:func:`~._stage_changes.promote`).

    Approving a request past its deadline at ``now`` (the clock's by default, also the
    decision's time; the earlier of the deadline stamped on it when it was made and
    ``expire_after_days`` after it was made, :func:`deadline_of`), or against another champion
    than serves, does not promote: it is closed (stored as rejected, by ``approver``) with
    the reason why around ``approver``'s, as its evidence is too old to be trusted, or no
    longer holds. Expiry is checked first, so a closed approval whose ``decided_at`` is
    past its expiry was closed for it (:func:`tunewatch._governance.closed_code`).
    Rejecting one is a rejection like any other."""
    current = get_approval(conn, approval_id)
    _lock_model(conn, current.model)
    current = get_approval(conn, approval_id)  # re-read under the lock
    if current.status != "pending":
        raise ConflictError(
            f"approval {approval_id} is already {current.status}", code="already_decided"
        )
    if person(approver) in _requesters(current):
        asked = ", ".join(repr(name) for name in (current.requested_by, *current.co_requesters))
        raise ConflictError(
            f"approval {approval_id} was requested by {asked}; {approver!r} is one of them"
            + _same_person_as(approver, (current.requested_by, *current.co_requesters))
            + ": another person must decide it",
            code="same_person",
        )
    status = "approved" if approve else "rejected"
    now = now or utcnow()
    now_champion = champion(conn, current.model)
    changed = (None if now_champion is None else now_champion.version) != current.champion_version
    expired = expiry_reason(current, expire_after_days=expire_after_days, now=now, reason=reason)
    if approve and expired is not None:  # first: the caller tells the two apart by it
        status, reason = "rejected", expired
    elif approve and changed:
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
            decision_reason=fit_reason(reason),
            decided_at=now,
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
            reason=f"approved request {approval_id} by {_asked_by(current)}: {reason}",
            approved=True,
            keep_previous=keep_previous,
        )
    return get_approval(conn, approval_id), promoted


def _same_person_as(approver: str, requesters: Sequence[str]) -> str:
    """Why ``approver`` is one of ``requesters`` under another name, or nothing."""
    who = person(approver)
    if who == BOOTSTRAP_TOKEN_NAME:
        return " (the bootstrap admin under any of its token's names)"
    rotated = ROTATED_NAME.fullmatch(approver)
    if rotated is not None:
        return f" (the same person as {rotated['first']!r}: their token's name after a rotation)"
    if approver not in requesters:
        return " (names that read the same once case and Unicode forms are folded are one person)"
    return ""


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
        f"model {approval.model!r} version {approval.version} was {stage_word(moved)} after "
        f"approval {approval.id} was requested (it is {stage_word(target.stage)} now): "
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
