"""Rollback: the champion restored to the one it replaced, and what puts that out of reach.

A rollback restores the champion the current one replaced (:func:`replaced_champion`,
read from the ``promoted`` events), unless it was itself rolled back or an operator
pulled it since (:func:`find_pull`: retired it after the promotion, "never serve it
again"); the daemon's own moves (the demotion at the promotion, the rollback watch lending
it to shadow and returning it) pull nothing. The rolled-back version's pending approvals
are closed (:func:`~._approval_rows.close_pending_approvals`).

:func:`rollback` runs inside the caller's transaction and writes its audit entry and
event in that same transaction; :func:`find_pull` and :func:`replaced_champion` read
what they are given, so the comparison's rollback watch asks them the same question.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from .._errors import ConflictError
from ._approval_rows import close_approval, close_pending_approvals, stage_word
from ._audit import append_audit_in
from ._events import add_event_in
from ._registry_rows import _lock_model, _set_stage_row, champion, check_champion, get_version
from ._schema import approvals, audit_entries, events
from ._types import VersionRow, utcnow


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
    _close_restored_approvals(conn, model, previous, actor=actor, reason=reason)
    return get_version(conn, model, previous), get_version(conn, model, current.version)


def _close_restored_approvals(
    conn: Connection, model: str, version: int, *, actor: str, reason: str
) -> None:
    """Close (rejected, by the rollback's ``actor``: the table holds no other closed
    status) the pending requests to promote ``version``, which the rollback has just
    restored as champion without them; each audited and with its event, as a superseded
    one is. ``reason`` is the rollback's."""
    why = f"superseded: v{version} was restored as champion by a rollback ({reason})"
    pending = conn.execute(
        select(approvals.c.id)
        .where(
            approvals.c.model == model,
            approvals.c.version == version,
            approvals.c.status == "pending",
        )
        .order_by(approvals.c.id)
    ).scalars()
    for approval_id in list(pending):
        close_approval(conn, approval_id, model, version, actor=actor, reason=why)


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
            f"{stage_word(self.stage)} by {self.actor!r} after v{self.champion} replaced it "
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
    :func:`~._governance._moved_since` reads them; the demotion at the promotion writes no
    ``set_stage``. A promotion of the pair again (the operator brought the pulled version
    back first) starts over."""
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
