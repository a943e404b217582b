"""Each live-split check records the count it judged: ``split_checks.since``, where its
count of units started, and ``split_checks.settings_since``, when the split's challenger,
salt and share it checked first applied (``NULL``: from the split's start).

A check carried the evidence of the newest check of the same salt and share whenever it
counted at least as many units, so a count restarted at a later ``start`` with as many
units kept the old mismatch, and a salt or share changed on the same start was counted
from that start, units assigned under both settings. Checks stored before this revision
have neither: the next check of the same settings judges against such a row as before
(the same count when it holds at least as many units), and records its own window. A
downgrade drops both columns.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("split_checks") as batch:
        batch.add_column(sa.Column("since", _TS, nullable=True))
        batch.add_column(sa.Column("settings_since", _TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("split_checks") as batch:
        batch.drop_column("settings_since")
        batch.drop_column("since")
