"""People's key/value tags on model versions: ``version_tags``.

DESIGN §6 says naming and tags follow one convention; names did, but a version could
carry no tag, and users coming from MLflow put ``ticket=RISK-123`` or
``validation=passed`` on versions. One row per version and key (the convention is
``tunewatch._tag_rules``'s), with who set it and when, and a foreign key to the version.
The table starts empty. A downgrade drops it, and the tags with it (their audit entries
stay).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "version_tags",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "key", name="pk_version_tags"),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name="fk_version_tags_model_version_model_versions",
        ),
    )


def downgrade() -> None:
    op.drop_table("version_tags")
