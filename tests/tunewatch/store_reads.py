"""What a call reads from a store, for tests of read costs: the statements it executed
(``before_cursor_execute`` on the store's engine), the rows they fetched and how many of
those carried a version's ``details`` (each statement run again afterwards, against the
same data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from tunewatch.store import Store

#: A re-tune's usual details: fold scores, a warm-start plan, importances (about 4 KB).
DETAILS = {"folds": [0.81 + i / 1000 for i in range(40)], "plan": "w" * 3600}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reads:
    """The statements a call executed, the rows they fetched, and how many of those rows
    carried a version's ``details``."""

    statements: int
    rows: int
    details: int


def reads(store: Store, call: Callable[[], T]) -> tuple[T, Reads]:
    """``call()``'s answer and what it read from ``store``."""
    seen: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        answer = call()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    rows = details = 0
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            result = conn.exec_driver_sql(statement, parameters)
            fetched = len(result.fetchall())
            rows += fetched
            details += fetched if "details" in result.keys() else 0
    return answer, Reads(statements=len(seen), rows=rows, details=details)
