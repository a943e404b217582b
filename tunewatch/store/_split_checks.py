"""Live splits: sample-ratio checks, and each test's running totals per unit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select

from ._comparison_rows import SplitCheckRow, UnitTotal
from ._engine import dialect_insert
from ._schema import requests, split_checks, split_units
from ._types import utcnow

# Unit keys per IN (...) list: far under SQLite's and PostgreSQL's parameter limits.
_KEYS_PER_STATEMENT = 500

# -- split checks ---------------------------------------------------------------------------


def _split(row: Row[Any]) -> SplitCheckRow:
    return SplitCheckRow(
        id=int(row.id),
        model=row.model,
        champion_version=int(row.champion_version),
        challenger_version=int(row.challenger_version),
        salt=row.salt,
        percent=float(row.percent),
        n_champion=int(row.n_champion),
        n_challenger=int(row.n_challenger),
        chi2=float(row.chi2),
        p_value=float(row.p_value),
        mismatch=bool(row.mismatch),
        created_at=row.created_at,
    )


def add_split_check(
    conn: Connection,
    *,
    model: str,
    champion_version: int,
    challenger_version: int,
    salt: str,
    percent: float,
    n_champion: int,
    n_challenger: int,
    chi2: float,
    p_value: float,
    mismatch: bool,
    since: datetime | None = None,
    settings_since: datetime | None = None,
) -> SplitCheckRow:
    """Store a check of the count of units received from ``since``; the split's challenger,
    salt and share applied from ``settings_since`` (``None``: from the split's start)."""
    row_id = conn.execute(
        split_checks.insert()
        .values(
            model=model,
            champion_version=champion_version,
            challenger_version=challenger_version,
            salt=salt,
            percent=percent,
            n_champion=n_champion,
            n_challenger=n_challenger,
            chi2=chi2,
            p_value=p_value,
            mismatch=mismatch,
            created_at=utcnow(),
            since=since,
            settings_since=settings_since,
        )
        .returning(split_checks.c.id)
    ).scalar_one()
    row = conn.execute(select(split_checks).where(split_checks.c.id == row_id)).one()
    return _split(row)


def latest_split_check(
    conn: Connection, model: str, *, salt: str | None = None, challenger_version: int | None = None
) -> SplitCheckRow | None:
    stmt = select(split_checks).where(split_checks.c.model == model)
    if salt is not None:
        stmt = stmt.where(split_checks.c.salt == salt)
    if challenger_version is not None:
        stmt = stmt.where(split_checks.c.challenger_version == challenger_version)
    row = conn.execute(stmt.order_by(split_checks.c.id.desc()).limit(1)).first()
    return None if row is None else _split(row)


@dataclass(frozen=True, slots=True)
class SplitWindow:
    """A split check with the count it judged: units received from ``since``, the
    split's challenger, salt and share applying from ``settings_since`` (``None``: from
    the split's start). ``since`` is ``None`` too on checks stored before revision 0016,
    which recorded neither."""

    check: SplitCheckRow
    since: datetime | None
    settings_since: datetime | None


def latest_split_window(conn: Connection, model: str) -> SplitWindow | None:
    """The newest split check of ``model``, whatever split it checked, with its count."""
    row = conn.execute(
        select(split_checks)
        .where(split_checks.c.model == model)
        .order_by(split_checks.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return SplitWindow(_split(row), since=row.since, settings_since=row.settings_since)


def new_settings_since(conn: Connection, model: str, now: datetime) -> datetime:
    """Where the count of a live split whose settings changed starts when a check first
    sees them at ``now``: there, or after the newest request of ``model`` recorded by
    then if it is stamped later (by a host whose clock runs ahead), so that no request
    recorded before the check saw the change is counted."""
    newest: datetime | None = conn.execute(
        select(func.max(requests.c.received_at)).where(requests.c.model == model)
    ).scalar_one()
    if newest is None:
        return now
    return max(now, newest + timedelta(microseconds=1))  # counts from ``received_at >=``


# -- unit totals ----------------------------------------------------------------------------


def unit_totals(
    conn: Connection, test_id: int, arm: str, unit_keys: Sequence[str]
) -> dict[str, tuple[int, float]]:
    """The totals ``(n, total)`` the test holds for those of ``unit_keys`` it has seen in
    ``arm``; units it has not seen are absent."""
    found: dict[str, tuple[int, float]] = {}
    keys = sorted(set(unit_keys))
    for i in range(0, len(keys), _KEYS_PER_STATEMENT):
        rows = conn.execute(
            select(split_units.c.unit_key, split_units.c.n, split_units.c.total).where(
                split_units.c.test_id == test_id,
                split_units.c.arm == arm,
                split_units.c.unit_key.in_(keys[i : i + _KEYS_PER_STATEMENT]),
            )
        )
        found.update((r.unit_key, (int(r.n), float(r.total))) for r in rows)
    return found


def write_unit_totals(conn: Connection, test_id: int, totals: Sequence[UnitTotal]) -> None:
    """Set the units' totals (they replace what the test held)."""
    if not totals:
        return
    insert = dialect_insert(conn, split_units)
    stmt = insert.on_conflict_do_update(
        index_elements=[split_units.c.test_id, split_units.c.arm, split_units.c.unit_key],
        set_={"n": insert.excluded.n, "total": insert.excluded.total},
    )
    ordered = sorted(totals, key=lambda t: (t.arm, t.unit_key))
    conn.execute(
        stmt,
        [
            {"test_id": test_id, "arm": t.arm, "unit_key": t.unit_key, "n": t.n, "total": t.total}
            for t in ordered
        ],
    )
