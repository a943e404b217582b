"""The append-only, hash-chained audit log.

Each entry's ``hash`` is ``sha256(prev_hash + canonical_json({at, actor, action,
target, details}))`` and ``prev_hash`` is the previous entry's hash (64 zeros for the
first). Appends update the single ``audit_head`` row in the same transaction: on
PostgreSQL that row lock serialises concurrent appenders, on SQLite ``BEGIN IMMEDIATE``
already does. The database refuses UPDATE and DELETE on ``audit_entries`` (triggers
installed by the migration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update

from ._canonical import canonical_json, json_roundtrip
from ._schema import ZERO_HASH, audit_entries, audit_head
from ._types import AuditEntry, utcnow


def entry_hash(
    prev_hash: str, *, at: datetime, actor: str, action: str, target: str, details: Any
) -> str:
    body = canonical_json(
        {
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append_audit_in(
    conn: Connection, *, actor: str, action: str, target: str, details: Mapping[str, Any]
) -> AuditEntry:
    """Append one entry inside the caller's transaction."""
    stored_details = json_roundtrip(dict(details))
    prev_hash = conn.execute(
        select(audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).scalar_one()
    at = utcnow()
    new_hash = entry_hash(
        prev_hash, at=at, actor=actor, action=action, target=target, details=stored_details
    )
    entry_id = conn.execute(
        audit_entries.insert()
        .values(
            at=at,
            actor=actor,
            action=action,
            target=target,
            details=stored_details,
            prev_hash=prev_hash,
            hash=new_hash,
        )
        .returning(audit_entries.c.id)
    ).scalar_one()
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=new_hash))
    return AuditEntry(
        id=entry_id,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=stored_details,
        prev_hash=prev_hash,
        hash=new_hash,
    )


def audit_log(
    conn: Connection,
    limit: int,
    target: str | None = None,
    *,
    model: str | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> list[AuditEntry]:
    stmt = select(audit_entries)
    if target is not None:
        stmt = stmt.where(audit_entries.c.target == target)
    if model is not None:
        stmt = stmt.where(_about(model))
    if action is not None:
        stmt = stmt.where(audit_entries.c.action == action)
    if actor is not None:
        stmt = stmt.where(audit_entries.c.actor == actor)
    rows = conn.execute(stmt.order_by(audit_entries.c.id.desc()).limit(limit)).all()
    return [_entry(r) for r in rows]


def audit_facets(conn: Connection, model: str | None = None) -> tuple[list[str], list[str]]:
    """The distinct actions and actors of the entries (about ``model``, if given)."""
    found = []
    for column in (audit_entries.c.action, audit_entries.c.actor):
        stmt = select(column).distinct()
        if model is not None:
            stmt = stmt.where(_about(model))
        found.append(sorted(str(v) for (v,) in conn.execute(stmt)))
    return found[0], found[1]


def _about(model: str) -> Any:
    """Entries whose target names ``model``: the model itself, or ``model/v3``,
    ``model:…``, ``model@…``."""
    target = audit_entries.c.target
    head = func.substr(target, 1, len(model) + 1)  # compared exactly (SQLite's LIKE is not)
    return or_(target == model, *(head == model + sep for sep in ("/", ":", "@")))


def verify_audit(conn: Connection) -> int | None:
    """Id of the first entry that does not chain or whose hash does not recompute."""
    expected_prev = ZERO_HASH
    result = conn.execute(
        select(audit_entries).order_by(audit_entries.c.id).execution_options(yield_per=1000)
    )
    for row in result:
        entry = _entry(row)
        recomputed = entry_hash(
            entry.prev_hash,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            details=entry.details,
        )
        if entry.prev_hash != expected_prev or entry.hash != recomputed:
            result.close()
            return entry.id
        expected_prev = entry.hash
    return None


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
