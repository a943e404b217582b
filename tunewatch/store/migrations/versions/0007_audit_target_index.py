"""Audit entries are looked up by target (a version's rationale report).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_target", "audit_entries", ["target"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_target", table_name="audit_entries")
