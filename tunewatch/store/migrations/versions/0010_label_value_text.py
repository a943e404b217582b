"""SQLite: ``labels.value`` keeps its JSON text (``TEXT``, not ``JSON``).

SQLite gives a column declared ``JSON`` NUMERIC affinity, so a scalar label's JSON text
was stored as a REAL parsed by SQLite itself, 1 ulp off for some values (a label
replayed with the very value sent was a ``conflict``), and a whole-number label as an
INTEGER. The column is rebuilt as ``TEXT``; each stored REAL or INTEGER becomes the JSON
text of the float it reads back as (Python's shortest round-tripping ``repr``). A value
already off by 1 ulp cannot be recovered and stays as it reads. Arrays were stored as
text all along and are copied unchanged. PostgreSQL's ``json`` keeps the text as sent:
nothing changes there.

Every other JSON column holds only objects or arrays, whose text SQLite does not convert.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = "tunewatch_label_json"


def _label_json(value: float) -> bytes:
    """The JSON text of a label SQLite stored as a number, as a BLOB: NUMERIC affinity
    converts text that looks like a number, never a BLOB."""
    return json.dumps(float(value)).encode("ascii")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.create_function(_FUNCTION, 1, _label_json, deterministic=True)
    try:
        op.execute(
            f"UPDATE labels SET value = {_FUNCTION}(value) "
            "WHERE typeof(value) IN ('integer', 'real')"
        )
    finally:
        driver.create_function(_FUNCTION, 1, None)
    with op.batch_alter_table("labels") as batch:  # copies with CAST(value AS TEXT)
        batch.alter_column(
            "value", type_=sa.Text(), existing_type=sa.JSON(), existing_nullable=False
        )
    op.execute("UPDATE labels SET value = CAST(value AS TEXT) WHERE typeof(value) = 'blob'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Copied without a CAST (Alembic casts to no JSON type): SQLite converts the numbers
    # again, as revision 0009 stored them.
    with op.batch_alter_table("labels") as batch:
        batch.alter_column(
            "value", type_=sa.JSON(), existing_type=sa.Text(), existing_nullable=False
        )
