"""An approval request keeps the deadline of the limit it was made under:
``approvals.expires_at``.

Approval requests expire ``approvals.expire_after_days`` after they are made, but the
limit lived only in each process's config: ``tunewatch approve`` run with the store's URL
alone (the default 30 days, or a config saying ``null``), or a replica on another config,
approved a request the daemon held expired. A request now stores its deadline when it is
made, and every decision applies the earlier of it and the deciding process's own limit.
Requests made before this revision have none (NULL): the deciding process's limit
applies to them, as before. A downgrade drops the column.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("approvals", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("expires_at")
