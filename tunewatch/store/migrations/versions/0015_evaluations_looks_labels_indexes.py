"""Reads that grew with all history are served by indexes: a model's newest evaluations
of any kind (the dashboard overview, ``GET /v1/models/{m}/evaluations``), in their order
(``window_end``, then id), were sorted from every evaluation the model had; a test's
latest look (every comparison tick, each test of the champion) walked back through every
later look of other tests; and a model's labels can be read in order of arrival.

Building an index locks its PostgreSQL table against writes while it runs (``labels``
is as large as the scoring history): on a large store an operator may build them first
with ``CREATE INDEX CONCURRENTLY`` under the same names, and this revision keeps them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_evaluations_model_window_end_id", "evaluations", ["model", "window_end", "id"]),
    ("ix_comparison_looks_test_id_id", "comparison_looks", ["test_id", "id"]),
    ("ix_labels_model_received_at", "labels", ["model", "received_at"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
