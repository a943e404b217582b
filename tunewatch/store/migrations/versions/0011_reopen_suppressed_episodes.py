"""Reopen alert episodes whose retune was suppressed while they still fire.

Before this revision a suppressed retune (job quota full, cool-down active) closed its
alert episode for good: every later delivery of the still-firing alert was dropped. The
code now leaves such an episode open for the next delivery; this revision does the same
for the episodes stored before it, so the next delivery of each gets its job. Resolved
episodes keep their decision.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE alert_episodes SET decision = NULL "
        "WHERE status = 'firing' AND decision LIKE 'retune suppressed%'"
    )


def downgrade() -> None:
    pass  # an open episode is what the older code stored before deciding it
