"""Light reads of the evaluations table for long histories.

``Store.list_evaluations`` decodes every payload; for a year of hourly windows that alone
costs a few hundred milliseconds per kind. The dashboard first reads a payload-free index
(id, window end, alarm flag), picks the windows it will draw, then decodes only their
payloads. A page that aggregates every window (the drift heatmap) streams the payloads
instead, decoded by orjson, and folds them as they arrive. Read-only, through the store's
transaction scope; the same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, Text, cast, select

from tunewatch.store import Store
from tunewatch.store._engine import READ_ONLY_OPTION, transaction
from tunewatch.store._schema import evaluations


def _reader(store: Store) -> Engine:
    return store.engine.execution_options(**{READ_ONLY_OPTION: True})


@dataclass(frozen=True, slots=True)
class WindowRef:
    id: int
    window_end: datetime
    status: str
    alarm: bool


def window_index(store: Store, model: str, kind: str, *, limit: int) -> list[WindowRef]:
    """The newest ``limit`` evaluations of ``kind``, oldest first, without payloads."""
    alarm = evaluations.c.payload["alarm"].as_boolean()
    stmt = (
        select(evaluations.c.id, evaluations.c.window_end, evaluations.c.status, alarm)
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_window_index") as conn:
        rows = list(conn.execute(stmt).all())
    rows.reverse()
    return [WindowRef(int(r[0]), r[1], str(r[2]), bool(r[3])) for r in rows]


def payloads(store: Store, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The payloads of the evaluations ``ids`` (missing ids are left out)."""
    if not ids:
        return {}
    stmt = select(evaluations.c.id, evaluations.c.payload).where(evaluations.c.id.in_(list(ids)))
    with transaction(_reader(store), "dashboard_payloads") as conn:
        return {int(r[0]): dict(r[1]) for r in conn.execute(stmt)}


def window_ids(store: Store, model: str, kind: str, *, limit: int) -> list[int]:
    """The ids of the newest ``limit`` evaluations of ``kind``, oldest first (no payload is
    read: on SQLite the (model, kind, window_end) index answers alone)."""
    stmt = (
        select(evaluations.c.id)
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_window_ids") as conn:
        ids = [int(r[0]) for r in conn.execute(stmt)]
    ids.reverse()
    return ids


def _decode(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, from a writer that allowed them
        value = json.loads(text)
    return value if isinstance(value, dict) else {}


def stream_windows(
    store: Store, model: str, kind: str, *, limit: int, chunk: int = 500
) -> Iterator[tuple[WindowRef, dict[str, Any]]]:
    """The newest ``limit`` evaluations of ``kind`` with their payloads, newest first,
    fetched ``chunk`` rows at a time, for a caller that folds every window as it goes and
    so holds one chunk, never every payload. Payloads are read as text and decoded by
    orjson, about a third of the JSON type's decoding time; ``alarm`` is the payload's."""
    stmt = (
        select(
            evaluations.c.id,
            evaluations.c.window_end,
            evaluations.c.status,
            cast(evaluations.c.payload, Text),
        )
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_stream_windows") as conn:
        for row in conn.execution_options(yield_per=chunk).execute(stmt):
            payload = _decode(row[3])
            ref = WindowRef(int(row[0]), row[1], str(row[2]), payload.get("alarm") is True)
            yield ref, payload
