"""The events of one type, of any model, are read through an index on ``(type, id)``.

``GET /v1/events?type=`` with no model read every event newest first to find those of
the type, and a type the daemon does not record (a misspelt filter) was looked for
among every stored event before the route answered 400: a scan of the whole log. Both
now seek the type in the index and read its events newest first from it.

Building the index locks a PostgreSQL table against writes while it runs; on a large
store an operator may build it first with ``CREATE INDEX CONCURRENTLY`` under the same
name, and this revision keeps it.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_type_id", "events", ["type", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_events_type_id", table_name="events")
