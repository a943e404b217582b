"""Initial schema: registry, scoring log, labels, events, audit log and API tokens.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ZERO_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("feature_names", sa.JSON(), nullable=False),
        sa.Column("regulated", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_models"),
        sa.CheckConstraint("task IN ('binary', 'multiclass', 'regression')", name="ck_models_task"),
    )
    op.create_table(
        "hyperparameter_sets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hyperparameter_sets"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artefact_sha256", sa.String(64), nullable=False),
        sa.Column("hyperparameter_set_id", sa.String(64), nullable=False),
        sa.Column("dataset_version", sa.String(200), nullable=True),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("study", sa.String(200), nullable=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("load_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("stage_changed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_model_versions_model_models"),
        sa.ForeignKeyConstraint(
            ["hyperparameter_set_id"],
            ["hyperparameter_sets.id"],
            name="fk_model_versions_hyperparameter_set_id_hyperparameter_sets",
        ),
        sa.UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
        sa.CheckConstraint(
            "stage IN ('shadow', 'champion', 'retired', 'rolled_back')",
            name="ck_model_versions_stage",
        ),
        sa.CheckConstraint("version >= 1", name="ck_model_versions_version_positive"),
    )
    op.create_index(
        "uq_model_versions_one_champion",
        "model_versions",
        ["model"],
        unique=True,
        sqlite_where=sa.text("stage = 'champion'"),
        postgresql_where=sa.text("stage = 'champion'"),
    )
    op.create_table(
        "requests",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_cols", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("model", "request_id", name="pk_requests"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_requests_model_models"),
        sa.CheckConstraint("source IN ('infer', 'mirror')", name="ck_requests_source"),
    )
    op.create_index("ix_requests_model_received_at", "requests", ["model", "received_at"])
    op.create_table(
        "outputs",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_cols", sa.Integer(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("model", "request_id", "version", name="pk_outputs"),
        sa.ForeignKeyConstraint(["model"], ["models.name"], name="fk_outputs_model_models"),
        sa.CheckConstraint(
            "role IN ('champion', 'challenger', 'external')", name="ck_outputs_role"
        ),
    )
    op.create_table(
        "labels",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.Float(), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("model", "request_id", name="pk_labels"),
        sa.ForeignKeyConstraint(
            ["model", "request_id"],
            ["requests.model", "requests.request_id"],
            name="fk_labels_model_request_id_requests",
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_model_created_at", "events", ["model", "created_at"])
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_entries"),
        sa.UniqueConstraint("hash", name="uq_audit_entries_hash"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.execute(sa.text(f"INSERT INTO audit_head (id, hash) VALUES (1, '{_ZERO_HASH}')"))
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    _create_audit_triggers()


def _create_audit_triggers() -> None:
    """Make ``audit_entries`` append-only in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION tunewatch_audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION USING
                    MESSAGE = 'audit_entries is append-only: ' || TG_OP || ' refused',
                    ERRCODE = 'integrity_constraint_violation';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
            "FOR EACH ROW EXECUTE FUNCTION tunewatch_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION tunewatch_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entries_no_{verb.lower()} BEFORE {verb} ON audit_entries "
                f"BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: {verb} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION tunewatch_audit_append_only()")
    else:
        op.execute("DROP TRIGGER audit_entries_no_update")
        op.execute("DROP TRIGGER audit_entries_no_delete")
    for table in (
        "api_tokens",
        "audit_head",
        "audit_entries",
        "events",
        "labels",
        "outputs",
        "requests",
        "model_versions",
        "hyperparameter_sets",
        "models",
    ):
        op.drop_table(table)
