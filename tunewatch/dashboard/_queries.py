"""Light reads of the evaluations table for long histories.

``Store.list_evaluations`` decodes every payload; for a year of hourly windows that alone
costs a few hundred milliseconds per kind. The dashboard first reads a payload-free index
(id, window end, alarm flag), picks the windows it will draw, then decodes only their
payloads. Read-only, through the store's transaction scope; the same SQL runs on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

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
