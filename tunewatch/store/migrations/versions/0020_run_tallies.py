"""Each version's runs per role, counted with their failures: ``run_tallies``.

A shadow run that failed (raised, stopped at its deadline, answered a value its checks
refused) recorded no output, so the store held no trace of it: a challenger failing on a
share of the requests it shadowed was promoted on the rest, and its failures then reached
clients. The recorder now counts each version's runs and failures in the transaction that
records their outputs, and the ``max_error_rate`` guardrail reads them. The table starts
empty: runs before the upgrade are not counted. A downgrade drops it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_tallies",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("last_failure", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "role", name="pk_run_tallies"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_run_tallies_model_models"),
        sa.CheckConstraint(
            "role IN ('champion', 'challenger', 'external')", name="ck_run_tallies_role"
        ),
    )


def downgrade() -> None:
    op.drop_table("run_tallies")
