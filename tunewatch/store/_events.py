"""Domain events (promotions, stage changes, drift alarms...): append and list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from ._canonical import json_roundtrip
from ._schema import events
from ._types import Event, utcnow


def add_event_in(
    conn: Connection, *, model: str | None, type: str, payload: Mapping[str, Any]
) -> Event:
    if not type or len(type) > 64:
        raise ValueError(f"event `type` must be 1-64 characters, got {type!r}")
    stored = json_roundtrip(dict(payload))
    created_at = utcnow()
    event_id = conn.execute(
        events.insert()
        .values(model=model, type=type, payload=stored, created_at=created_at)
        .returning(events.c.id)
    ).scalar_one()
    return Event(id=event_id, model=model, type=type, payload=stored, created_at=created_at)


def list_events(
    conn: Connection,
    *,
    model: str | None,
    type: str | None,
    limit: int,
    types: Sequence[str] | None = None,
) -> list[Event]:
    stmt = select(events)
    if model is not None:
        stmt = stmt.where(events.c.model == model)
    if type is not None:
        stmt = stmt.where(events.c.type == type)
    if types is not None:
        stmt = stmt.where(events.c.type.in_(list(types)))
    rows = conn.execute(stmt.order_by(events.c.id.desc()).limit(limit))
    return [_event(r) for r in rows]


def last_action(
    conn: Connection, *, model: str, trigger: str, outcomes: Sequence[str]
) -> Event | None:
    """The newest ``action_<outcome>`` event of ``model`` (one of ``outcomes``) whose
    ``trigger`` was ``trigger``; None when there is none."""
    row = conn.execute(
        select(events)
        .where(
            events.c.model == model,
            events.c.type.in_([f"action_{o}" for o in outcomes]),
            events.c.payload["trigger"].as_string() == trigger,
        )
        .order_by(events.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _event(row)


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        model=row.model,
        type=row.type,
        payload=dict(row.payload),
        created_at=row.created_at,
    )
