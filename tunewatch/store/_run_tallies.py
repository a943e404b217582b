"""Each version's runs per role, counted with their failures (``run_tallies``).

The recorder hands the tallies of a drain to :meth:`Store.write_records`, which adds them
in the transaction that records the drain's outputs: an upsert per (model, version, role)
that adds to the running totals, in key order (concurrent writers on PostgreSQL lock the
rows in the same order). A shadow output stored twice (``ON CONFLICT DO NOTHING``) is
counted twice: the runs are what was run, not what was kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text

from ._schema import run_tallies
from ._types import Role, RunTally

_Key = tuple[str, int, str]

_UPSERT = (
    "INSERT INTO run_tallies (model, version, role, runs, failures, last_failure, updated_at) "
    "VALUES ({marks}) ON CONFLICT (model, version, role) DO UPDATE SET "
    "runs = run_tallies.runs + excluded.runs, "
    "failures = run_tallies.failures + excluded.failures, "
    "last_failure = COALESCE(excluded.last_failure, run_tallies.last_failure), "
    "updated_at = excluded.updated_at"
)
_SQLITE_UPSERT = _UPSERT.format(marks=", ".join("?" * 7))
_UPSERT_TEXT = text(
    _UPSERT.format(marks=":model, :version, :role, :runs, :failures, :last_failure, :updated_at")
)


def merged(tallies: Sequence[RunTally]) -> list[RunTally]:
    """``tallies`` summed per (model, version, role), in key order; the last failure code
    of each key is its last one given."""
    by_key: dict[_Key, RunTally] = {}
    for t in tallies:
        key = (t.model, t.version, t.role)
        seen = by_key.get(key)
        if seen is not None:
            t = RunTally(
                model=t.model,
                version=t.version,
                role=t.role,
                runs=seen.runs + t.runs,
                failures=seen.failures + t.failures,
                last_failure=t.last_failure or seen.last_failure,
            )
        by_key[key] = t
    return [by_key[k] for k in sorted(by_key)]


def add_tallies_sqlite(cursor: Any, tallies: Sequence[RunTally], stamp: str) -> None:
    """Add ``tallies`` on SQLite's hot path (the driver cursor of the write transaction),
    at ``stamp`` (the time as the SQLite store writes it)."""
    for t in merged(tallies):
        cursor.execute(
            _SQLITE_UPSERT,
            (t.model, t.version, t.role, t.runs, t.failures, t.last_failure, stamp),
        )


def add_tallies(conn: Connection, tallies: Sequence[RunTally], now: datetime) -> None:
    """Add ``tallies`` in the caller's transaction (PostgreSQL, any SQLAlchemy dialect)."""
    rows = [
        {
            "model": t.model,
            "version": t.version,
            "role": t.role,
            "runs": t.runs,
            "failures": t.failures,
            "last_failure": t.last_failure,
            "updated_at": now,
        }
        for t in merged(tallies)
    ]
    if rows:
        conn.execute(_UPSERT_TEXT, rows)


def get_tally(conn: Connection, model: str, version: int, role: Role) -> RunTally | None:
    """``version``'s running totals in ``role``; ``None`` before its first counted run."""
    row = conn.execute(
        select(run_tallies).where(
            run_tallies.c.model == model,
            run_tallies.c.version == version,
            run_tallies.c.role == role,
        )
    ).one_or_none()
    if row is None:
        return None
    return RunTally(
        model=row.model,
        version=row.version,
        role=row.role,
        runs=row.runs,
        failures=row.failures,
        last_failure=row.last_failure,
    )
