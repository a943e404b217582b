"""The purge deletes the rows saying which tests consumed the requests it purges, by the
request: ``comparison_consumed`` gets an index on ``request_id``. Its primary key leads
with the test, and PostgreSQL scanned the whole table for each batch's requests (100k
rows: 47 ms per 500 requests, growing with the table).

Building an index locks its PostgreSQL table against writes while it runs (the table
held every request each test ever consumed): on a large store an operator may build it
first with ``CREATE INDEX CONCURRENTLY`` under the same name, and this revision keeps it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_comparison_consumed_request_id"


def upgrade() -> None:
    op.create_index(_NAME, "comparison_consumed", ["request_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="comparison_consumed")
