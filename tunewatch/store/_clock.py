"""The database's clock, for the times several hosts compare: job heartbeats against the
staleness limit, the scheduler lease's expiry, and the age of an alert episode's claim.
Each host's own clock may run minutes off the others'; the database's is the one they
share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Interval, String, func, literal, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from ._schema import UTCDateTime

#: SQLAlchemy's text for a naive UTC datetime on SQLite, which ``UTCDateTime`` stores
#: there: SQLite's ``%f`` is seconds with milliseconds, padded to microseconds here, so
#: the database's times sort with the stored ones as text.
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f000"


def db_now(conn: Connection, offset: timedelta = timedelta(0)) -> ColumnElement[datetime]:
    """The database's current time plus ``offset``, as an SQL expression to store in or
    compare with a ``UTCDateTime`` column (PostgreSQL: the transaction's start; SQLite:
    the statement's, to the millisecond)."""
    if conn.dialect.name == "sqlite":
        modifier = literal(f"{offset.total_seconds():+.6f} seconds", String)
        return func.strftime(_SQLITE_FORMAT, "now", modifier, type_=UTCDateTime)
    return type_coerce(func.now() + literal(offset, Interval()), UTCDateTime)


def clock_offset(conn: Connection, now: Callable[[], datetime]) -> timedelta:
    """The database's clock minus ``now``'s (this process's), read once: positive when
    this host's clock runs behind. On SQLite both are this host's, so about zero."""
    before = now()
    db = conn.execute(select(db_now(conn))).scalar_one()
    after = now()
    return db - (before + (after - before) / 2)
