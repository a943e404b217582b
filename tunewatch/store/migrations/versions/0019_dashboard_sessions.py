"""Dashboard sign-ins are sessions the server keeps: ``dashboard_sessions``.

The dashboard's cookie held the API token itself, so signing out only asked the browser to
forget it: a copy taken before kept the pages open, and worked as a bearer token for the
whole API, until the token was revoked; its 8 hours were the browser's to keep. The cookie
now holds a random session id, stored here as its sha256 with the token's name and its
expiry by the database's clock; signing out deletes the row. The table starts empty: a
browser signed in before the upgrade signs in again. A downgrade drops it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("token_name", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dashboard_sessions"),
        sa.UniqueConstraint("session_hash", name="uq_dashboard_sessions_session_hash"),
        sa.ForeignKeyConstraint(
            ["token_name"], ["api_tokens.name"], name="fk_dashboard_sessions_token_name_api_tokens"
        ),
    )


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
