"""A job counts the times its workers died under it: ``jobs.crashes``.

A job whose worker was killed (the OOM killer, ``kill -9``, its host gone) was failed,
with every trial it had completed, and its trigger settled: the retune was lost. It is now
queued again, and the next worker resumes its study, until its workers have died
``tunewatch._launcher.MAX_CRASHES`` times. Jobs stored before this revision count 0. A
downgrade drops the column.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("crashes", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("crashes")
