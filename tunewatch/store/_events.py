"""Domain events (promotions, stage changes, drift alarms...): append and list.

An event decided on the model's last one of its type (an evaluation policy's, after its
streak and cool-down) is appended only if that is still the last
(:func:`add_event_after_in`): read and insert in one serialised step, so that two
processes deciding on the same history record it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, or_, select

from .._errors import InvalidValueError
from ._advisory import lock_in_schema
from ._canonical import json_roundtrip
from ._schema import events
from ._types import Event, utcnow


def storable_json(value: Any, *, field: str) -> Any:
    """``value`` as a JSON column stores it and reads it back (tuples as lists, keys as
    text); ``InvalidValueError`` when a string in it (a key or a value, at any depth) holds
    a NUL. PostgreSQL's ``json`` keeps one, escaped, but cannot turn it back into text: any
    ``->>`` that reads the row fails, and a query filtering a table's rows on a field fails
    on every row it meets. Refused on SQLite too, so both backends hold the same values."""
    stored = json_roundtrip(value)
    stack: list[tuple[str, Any]] = [(field, stored)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise InvalidValueError(f"`{path}` must not hold a NUL, got {item[:80]!r}")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise InvalidValueError(
                        f"a key of `{path}` must not hold a NUL, got {key[:80]!r}"
                    )
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return stored


def holds_nul(*filters: str | None) -> bool:
    """Whether a text filter holds a NUL: no stored row does (the store refuses one), so
    none matches. PostgreSQL refuses one in a query (a 400 where SQLite found nothing)."""
    return any(f is not None and "\x00" in f for f in filters)


def add_event_in(
    conn: Connection, *, model: str | None, type: str, payload: Mapping[str, Any]
) -> Event:
    if not type or len(type) > 64:
        raise ValueError(f"event `type` must be 1-64 characters, got {type!r}")
    stored = storable_json(dict(payload), field="payload")
    created_at = utcnow()
    event_id = conn.execute(
        events.insert()
        .values(model=model, type=type, payload=stored, created_at=created_at)
        .returning(events.c.id)
    ).scalar_one()
    return Event(id=event_id, model=model, type=type, payload=stored, created_at=created_at)


def add_event_after_in(
    conn: Connection,
    *,
    model: str,
    type: str,
    payload: Mapping[str, Any],
    last: int | None,
) -> Event | None:
    """Append ``type`` for ``model`` only if the newest event of that type is still the
    one of id ``last`` (``None``: there was none), the one the caller decided on; else
    ``None``, recording nothing: another process decided on the same history and recorded
    it first. ``conn`` must be a writing transaction: on SQLite its ``BEGIN IMMEDIATE``
    serialises it with every other writer; on PostgreSQL an advisory lock on ``(model,
    type)`` in the store's schema, held until it ends, with every other append of the pair
    through here, and the read after it sees what they committed (a statement's snapshot
    under read committed)."""
    if conn.dialect.name == "postgresql":
        lock_in_schema(conn, "events", model, type)
    newest = conn.execute(
        select(events.c.id)
        .where(events.c.model == model, events.c.type == type)
        .order_by(events.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if newest != last:
        return None
    return add_event_in(conn, model=model, type=type, payload=payload)


def list_events(
    conn: Connection,
    *,
    model: str | None,
    type: str | None,
    limit: int,
    types: Sequence[str] | None = None,
    before_id: int | None = None,
) -> list[Event]:
    """Newest first (by id, the order of the appends), at most ``limit``; with
    ``before_id`` only those of a lower id, a keyset cursor for the next older page."""
    if holds_nul(model, type, *(types or ())):
        return []
    stmt = select(events)
    if before_id is not None:
        stmt = stmt.where(events.c.id < before_id)
    if model is not None:
        stmt = stmt.where(events.c.model == model)
    if type is not None:
        stmt = stmt.where(events.c.type == type)
    if types is not None:
        stmt = stmt.where(events.c.type.in_(list(types)))
    rows = conn.execute(stmt.order_by(events.c.id.desc()).limit(limit))
    return [_event(r) for r in rows]


def event_type_stored(conn: Connection, *, type: str, model: str | None) -> bool:
    """Whether any event of ``type`` is stored (``GET /v1/events`` filters on a type an
    earlier version recorded while events of it are). First among ``model``'s, if given,
    through the ``(model, type, id)`` index; then among all, through the ``(type, id)``
    one: a seek either way, for a type none holds (a misspelt filter) too. The route asks
    only about a type the daemon does not record (see :mod:`tunewatch._event_types`)."""
    if holds_nul(type, model):
        return False
    probe = select(events.c.id).where(events.c.type == type).limit(1)
    if model is not None:
        if conn.execute(probe.where(events.c.model == model)).first() is not None:
            return True
    return conn.execute(probe).first() is not None


def events_after(
    conn: Connection, *, after_id: int, also: Sequence[int] = (), limit: int
) -> list[Event]:
    """Oldest first (by id): the events of an id above ``after_id``, and those of the ids
    ``also`` (a reader's gaps below it: ids whose appends had not committed when it read
    past them), at most ``limit``. A reader going forward from the last id it read."""
    stmt = select(events).where(
        or_(events.c.id > after_id, events.c.id.in_(list(also))) if also else events.c.id > after_id
    )
    rows = conn.execute(stmt.order_by(events.c.id).limit(limit))
    return [_event(r) for r in rows]


def last_event_id_before(conn: Connection, *, before: datetime) -> int:
    """The id of the newest event stamped before ``before`` (0 when there is none): the
    primary key read backwards from the newest event, through those stamped since only."""
    newest = conn.execute(
        select(events.c.id)
        .where(events.c.created_at < before)
        .order_by(events.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return 0 if newest is None else int(newest)


def event_types(conn: Connection, *, model: str | None) -> list[str]:
    """The distinct types of every event (of ``model``, if given), sorted; the
    ``(model, type, id)`` index answers for one model."""
    if holds_nul(model):
        return []
    stmt = select(events.c.type).distinct()
    if model is not None:
        stmt = stmt.where(events.c.model == model)
    return sorted(str(t) for (t,) in conn.execute(stmt))


def last_action(
    conn: Connection, *, model: str, trigger: str, outcomes: Sequence[str]
) -> Event | None:
    """The newest ``action_<outcome>`` event of ``model`` (one of ``outcomes``) whose
    ``trigger`` was ``trigger``; None when there is none.

    The trigger is read only out of the action events: PostgreSQL may test the conditions
    of a ``WHERE`` in any order, and reading a field out of another event of the model
    that holds a NUL (stored before :func:`storable_json` refused one) would fail the
    query. A ``CASE`` evaluates its branch only for the rows its condition selects."""
    types = [f"action_{o}" for o in outcomes]
    action_trigger = case((events.c.type.in_(types), events.c.payload["trigger"].as_string()))
    row = conn.execute(
        select(events)
        .where(events.c.model == model, events.c.type.in_(types), action_trigger == trigger)
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
