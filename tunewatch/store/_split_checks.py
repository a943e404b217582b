"""Sample-ratio checks of live splits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select

from ._comparison_rows import (
    SplitCheckRow,
)
from ._schema import (
    split_checks,
)
from ._types import utcnow

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
) -> SplitCheckRow:
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
