"""Evaluation's and the guardrails' reads are served by indexes: one version's outputs
since a time, or its newest (its latencies; read version by version), and one model's
newest events of some types (the last action of a trigger). The outputs index holds only
rows with a latency (champion answers, one per shadow drain): batched shadow outputs add
no index entry to the write path. It holds the version: on (model, created_at) alone a
sparse challenger's newest latencies walked every champion latency in between.

Building the outputs index locks a PostgreSQL table against writes while it runs; on a
large store an operator may build it first with ``CREATE INDEX CONCURRENTLY`` under the
same name, and this revision keeps it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outputs_model_version_created_at",
        "outputs",
        ["model", "version", "created_at"],
        if_not_exists=True,
        sqlite_where=sa.text("latency_s IS NOT NULL"),
        postgresql_where=sa.text("latency_s IS NOT NULL"),
    )
    op.create_index("ix_events_model_type_id", "events", ["model", "type", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_model_type_id", table_name="events")
    op.drop_index("ix_outputs_model_version_created_at", table_name="outputs")
