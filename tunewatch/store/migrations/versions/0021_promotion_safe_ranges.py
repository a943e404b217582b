"""Each configured model's promotion safe ranges, stored: ``promotion_safe_ranges``.

The rule that makes a promotion of hyperparameters outside their safe ranges wait for an
approver read the ranges only from the config of the process that promoted: ``tunewatch
promote`` run with only the store's URL, or a replica still on an older config, promoted at
once a version the daemon held for an approver. A daemon now stores, when it starts, each
model its config lists with the ranges its promotions check (the config's ``safe_ranges``
and the search space's ``safe:`` bounds, canonical JSON), and every promotion checks them
as well as its own config's. The table starts empty: it fills as each daemon starts on the
new release. A downgrade drops it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "promotion_safe_ranges",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("ranges", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_promotion_safe_ranges"),
    )


def downgrade() -> None:
    op.drop_table("promotion_safe_ranges")
