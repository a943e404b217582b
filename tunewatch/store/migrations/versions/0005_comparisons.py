"""Sequential comparisons: tests with persisted state, fed requests, looks, split checks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "comparison_tests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("correction", sa.String(16), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("looks", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("decided_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_comparison_tests"),
        sa.ForeignKeyConstraint(
            ["model"], ["models.name"], name="fk_comparison_tests_model_models"
        ),
        sa.UniqueConstraint(
            "model",
            "kind",
            "champion_version",
            "challenger_version",
            name="uq_comparison_tests_pair",
        ),
        sa.CheckConstraint(
            "status IN ('open', 'decided', 'closed')", name="ck_comparison_tests_status"
        ),
        sa.CheckConstraint(
            "kind IN ('paired', 'delong', 'rollback_watch', 'split')",
            name="ck_comparison_tests_kind",
        ),
    )
    op.create_table(
        "comparison_consumed",
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("look", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("test_id", "request_id", name="pk_comparison_consumed"),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["comparison_tests.id"],
            name="fk_comparison_consumed_test_id_comparison_tests",
        ),
    )
    op.create_table(
        "comparison_looks",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("estimate", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("adjusted_p_value", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("fixed_t_p", sa.Float(), nullable=True),
        sa.Column("bootstrap_low", sa.Float(), nullable=True),
        sa.Column("bootstrap_high", sa.Float(), nullable=True),
        sa.Column("correction", sa.String(16), nullable=True),
        sa.Column("family_size", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comparison_looks"),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["comparison_tests.id"],
            name="fk_comparison_looks_test_id_comparison_tests",
        ),
    )
    op.create_index(
        "ix_comparison_looks_model_challenger",
        "comparison_looks",
        ["model", "challenger_version", "id"],
    )
    op.create_table(
        "split_checks",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("n_champion", sa.Integer(), nullable=False),
        sa.Column("n_challenger", sa.Integer(), nullable=False),
        sa.Column("chi2", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("mismatch", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_split_checks"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_split_checks_model_models"),
    )
    op.create_index("ix_split_checks_model_id", "split_checks", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_split_checks_model_id", table_name="split_checks")
    op.drop_table("split_checks")
    op.drop_index("ix_comparison_looks_model_challenger", table_name="comparison_looks")
    op.drop_table("comparison_looks")
    op.drop_table("comparison_consumed")
    op.drop_table("comparison_tests")
