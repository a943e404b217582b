"""A live split's sample-ratio check counts its units incrementally: ``split_counts``
keeps each model's running count of units per arm and how far it has read, and
``split_count_units`` the units it counted.

Every check counted the distinct units of every request since the split's start, twice
(one ``COUNT(DISTINCT)`` per arm): 150 ms at 50k requests and 938 ms at 400k on SQLite,
146 and 1,126 ms on PostgreSQL, every comparison tick, growing with the split. The tables
start empty: the first check after the upgrade counts the whole split once, as before,
and the next ones read on from there. A downgrade drops them.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "split_counts",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=False),
        sa.Column("since", _TS, nullable=True),
        sa.Column("read_to", _TS, nullable=True),
        sa.Column("n_champion", sa.Integer(), nullable=False),
        sa.Column("n_challenger", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_split_counts"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_split_counts_model_models"),
    )
    op.create_table(
        "split_count_units",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("arm", sa.String(16), nullable=False),
        sa.Column("unit_key", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("model", "arm", "unit_key", name="pk_split_count_units"),
        sa.ForeignKeyConstraint(
            ["model"], ["split_counts.model"], name="fk_split_count_units_model_split_counts"
        ),
        sa.CheckConstraint("arm IN ('champion', 'challenger')", name="ck_split_count_units_arm"),
    )


def downgrade() -> None:
    op.drop_table("split_count_units")
    op.drop_table("split_counts")
