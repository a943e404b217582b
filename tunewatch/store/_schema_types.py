"""The pieces the store's tables are declared with: the one ``MetaData`` (and its naming
convention), the column types that behave the same on SQLite and PostgreSQL, and the
constants the tables' users share.

Only the ``_schema*`` modules declare tables on ``metadata``; everything else reaches the
tables through ``tunewatch.store._schema``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, MetaData
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler
from sqlalchemy.types import TypeDecorator

ZERO_HASH = "0" * 64

#: The largest row id (version, approval, job) an INTEGER column holds (PostgreSQL int4):
#: the API and the CLI refuse larger ones before they reach the database.
MAX_ID = 2**31 - 1

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts aware datetimes and returns aware UTC.

    SQLite has no time zone support, so values are stored there as naive UTC and
    re-tagged as UTC when read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetimes stored must be timezone-aware, got naive {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _SQLiteTextJSON(sqlite.JSON):
    """SQLite's JSON in a column declared ``TEXT``.

    SQLite gives a column declared ``JSON`` NUMERIC affinity: the JSON text of a bare
    number is converted to INTEGER or REAL by SQLite's own parser, which does not always
    round correctly (``2.434619594169251`` becomes ``2.4346195941692512``) and turns
    integers past 64 bits into REALs. A ``TEXT`` column keeps the text as written.
    """


@compiles(_SQLiteTextJSON, "sqlite")
def _sqlite_text_json(type_: _SQLiteTextJSON, compiler: TypeCompiler, **kw: Any) -> str:
    return "TEXT"


#: JSON whose value may be a bare number (a label): ``TEXT`` on SQLite, ``JSON`` elsewhere.
#: Columns that hold only objects or arrays keep ``JSON``: SQLite leaves their text alone.
ScalarJSON = JSON().with_variant(_SQLiteTextJSON(), "sqlite")


def _in(column: str, choices: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(c) for c in choices)})"


_EventId = BigInteger().with_variant(Integer(), "sqlite")
