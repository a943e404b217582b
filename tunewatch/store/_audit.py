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

from sqlalchemy import Connection, Row, select, update

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


def audit_log(conn: Connection, limit: int, target: str | None = None) -> list[AuditEntry]:
    stmt = select(audit_entries)
    if target is not None:
        stmt = stmt.where(audit_entries.c.target == target)
    rows = conn.execute(stmt.order_by(audit_entries.c.id.desc()).limit(limit)).all()
    return [_entry(r) for r in rows]


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
