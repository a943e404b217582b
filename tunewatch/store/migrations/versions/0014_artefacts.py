"""The store keeps artefacts' bytes: ``artefacts`` (sha256, suffix) -> data.

ONNX files, reference snapshots and drift reports were written only to the registering
host's ``<data_dir>/artefacts``: a host sharing a PostgreSQL store (a replica, a tuning
worker, the CLI elsewhere) found them missing. Each host's directory is now a cache of
this table. Artefacts stored before this revision have no row: a daemon starting, or
`tunewatch migrate`, on a host that cached them fills it (each version's ONNX file and
reference snapshot, each `drift_report` evaluation's HTML), as does registering or
importing the same bytes again. A downgrade drops the table and, on PostgreSQL, the
only copy of an artefact no host's cache holds (registered from a host whose data_dir is
gone): `tunewatch migrate --to` first writes every row into the cache of the host running
it, each verified, and downgrades nothing when one cannot be. Upgrading again, a daemon
start or `tunewatch migrate` on that host fills the table from its cache as above.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artefacts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("suffix", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "suffix", name="pk_artefacts"),
    )


def downgrade() -> None:
    op.drop_table("artefacts")
