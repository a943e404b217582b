"""The store's tables: one ``MetaData``, mirrored by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler
from sqlalchemy.types import TypeDecorator

from ._types import ROLES, SOURCES, STAGES, TASKS

ZERO_HASH = "0" * 64

#: The largest row id (version, approval, job) an INTEGER column holds (PostgreSQL int4):
#: the API and the CLI refuse larger ones before they reach the database.
MAX_ID = 2**31 - 1

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts aware datetimes and returns aware UTC.

    SQLite has no time zone support, so values are stored there as naive UTC and
    re-tagged as UTC when read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetimes stored must be timezone-aware, got naive {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _SQLiteTextJSON(sqlite.JSON):
    """SQLite's JSON in a column declared ``TEXT``.

    SQLite gives a column declared ``JSON`` NUMERIC affinity: the JSON text of a bare
    number is converted to INTEGER or REAL by SQLite's own parser, which does not always
    round correctly (``2.434619594169251`` becomes ``2.4346195941692512``) and turns
    integers past 64 bits into REALs. A ``TEXT`` column keeps the text as written.
    """


@compiles(_SQLiteTextJSON, "sqlite")
def _sqlite_text_json(type_: _SQLiteTextJSON, compiler: TypeCompiler, **kw: Any) -> str:
    return "TEXT"


#: JSON whose value may be a bare number (a label): ``TEXT`` on SQLite, ``JSON`` elsewhere.
#: Columns that hold only objects or arrays keep ``JSON``: SQLite leaves their text alone.
ScalarJSON = JSON().with_variant(_SQLiteTextJSON(), "sqlite")


def _in(column: str, choices: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(c) for c in choices)})"


_EventId = BigInteger().with_variant(Integer(), "sqlite")

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("task", String(16), nullable=False),
    Column("feature_names", JSON, nullable=False),
    Column("regulated", Boolean(create_constraint=False), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("task", TASKS), name="task"),
)

hyperparameter_sets = Table(
    "hyperparameter_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("params", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artefact_sha256", String(64), nullable=False),
    Column(
        "hyperparameter_set_id", String(64), ForeignKey("hyperparameter_sets.id"), nullable=False
    ),
    Column("dataset_version", String(200), nullable=True),
    Column("parent_version", Integer, nullable=True),
    Column("study", String(200), nullable=True),
    Column("stage", String(16), nullable=False),
    Column("details", JSON, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("load_memory_bytes", BigInteger, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("stage_changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("model", "version"),
    CheckConstraint(_in("stage", STAGES), name="stage"),
    CheckConstraint("version >= 1", name="version_positive"),
    # At most one champion per model, enforced by the database itself.
    Index(
        "uq_model_versions_one_champion",
        "model",
        unique=True,
        sqlite_where=text("stage = 'champion'"),
        postgresql_where=text("stage = 'champion'"),
    ),
)

requests = Table(
    "requests",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("n_cols", Integer, nullable=False),
    Column("inputs", LargeBinary, nullable=False),
    Column("unit_key", String(128), nullable=True),  # a live split's unit (user, account …)
    PrimaryKeyConstraint("model", "request_id"),
    CheckConstraint(_in("source", SOURCES), name="source"),
    Index("ix_requests_model_received_at", "model", "received_at"),
)

# No foreign key to ``requests``: a shadow output may be written before its request row.
outputs = Table(
    "outputs",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("latency_s", Float, nullable=True),
    Column("n_rows", Integer, nullable=False),
    Column("n_cols", Integer, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "request_id", "version"),
    CheckConstraint(_in("role", ROLES), name="role"),
    # A version's latencies since a time, or its newest (every latency read goes version
    # by version: with the version in the index a sparse challenger's newest do not walk
    # the champion's in between). Partial: batched shadow outputs carry no latency and
    # cost the write path no index entry.
    Index(
        "ix_outputs_model_version_created_at",
        "model",
        "version",
        "created_at",
        sqlite_where=text("latency_s IS NOT NULL"),
        postgresql_where=text("latency_s IS NOT NULL"),
    ),
)

#: Each version's runs per role, counted by the recorder in the transaction that records
#: their outputs: the runs that failed have no output, so only here does a challenger
#: failing on a share of requests show in the store (the error-rate guardrail).
run_tallies = Table(
    "run_tallies",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("runs", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("last_failure", String(64), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "version", "role"),
    CheckConstraint(_in("role", ROLES), name="role"),
)

labels = Table(
    "labels",
    metadata,
    Column("model", String(200), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("value", ScalarJSON, nullable=False),
    Column("outcome", Float, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "request_id"),
    ForeignKeyConstraint(["model", "request_id"], ["requests.model", "requests.request_id"]),
    Index("ix_labels_model_received_at", "model", "received_at"),  # a model's labels by arrival
)

events = Table(
    "events",
    metadata,
    Column("id", _EventId, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=True),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_events_model_created_at", "model", "created_at"),
    Index("ix_events_model_type_id", "model", "type", "id"),  # a model's newest of a type
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(400), nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_audit_entries_target", "target"),
)

# One row (id=1) holding the chain head; updating it serialises concurrent appenders.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# Leases: one row per named role (e.g. "scheduler"); the holder renews it before it
# expires, anybody may take it once expired. Only the holder runs the scheduler.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Dashboard sign-ins: the browser's cookie holds a random session id, stored here only as
# its sha256, with the token it signed in with (by name) and when it ends (the database's
# clock). Sign-out deletes the row; a revoked token's sessions read as ended.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_hash", String(64), nullable=False, unique=True),
    Column("token_name", String(100), ForeignKey("api_tokens.name"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Evaluation results per model and window: drift, decay, label-free estimates, telemetry.
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", _EventId, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("window_start", UTCDateTime, nullable=True),
    Column("window_end", UTCDateTime, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_evaluations_model_kind_window_end", "model", "kind", "window_end"),
    # A model's newest of any kind, in the reads' order (ties on window_end by id).
    Index("ix_evaluations_model_window_end_id", "model", "window_end", "id"),
)

# Promotions that wait for an approver (regulated models, unsafe hyperparameters).
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decision_reason", String(2000), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("champion_version", Integer, nullable=True),  # when requested; NULL before 0006
    CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
    Index("ix_approvals_model_status", "model", "status"),
)

# Alertmanager alert episodes: one row per (fingerprint, startsAt), so the same
# notification delivered again (at least once, possibly concurrently) is recognised.
alert_episodes = Table(
    "alert_episodes",
    metadata,
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", String(64), nullable=False),
    Column("model", String(200), nullable=True),
    Column("alertname", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("decision", String(400), nullable=True),
    PrimaryKeyConstraint("fingerprint", "starts_at"),
)

# Work the daemon hands to workers (re-tuning). ``dedupe_key`` makes "one job per
# trigger" a database guarantee (e.g. one per alert episode).
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("dedupe_key", String(300), nullable=True, unique=True),
    Column("spec", JSON, nullable=False),
    Column("progress", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", String(4000), nullable=True),
    Column("worker", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("heartbeat_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    # the times its workers died under it (killed, or silent past the stale limit)
    Column("crashes", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(
        "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
    ),
    Index("ix_jobs_model_status", "model", "status"),
)

# Sequential comparisons (paired shadow tests, group-sequential DeLong, rollback watches):
# one row per test with its persisted state, so a restarted daemon continues the same
# always-valid test. A pair is tested once per champion: a decided test is never reopened.
# ``promotion_id`` tells apart the tests of one pair that must be several: a rollback
# watch is one per promotion (there, the ``promoted`` event it follows), so a pair promoted
# again after a rollback or a flip back is watched again; a live split's test is one per
# setting of the split's challenger, salt and share (there, the id of the split test it
# replaced, closed when they changed; 0 for the first). Paired tests have 0 there.
comparison_tests = Table(
    "comparison_tests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("champion_version", Integer, nullable=False),
    Column("challenger_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("correction", String(16), nullable=True),
    Column("n", Integer, nullable=False),
    Column("looks", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    Column("outcome", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("promotion_id", _EventId, nullable=False, server_default=text("0")),
    UniqueConstraint(
        "model",
        "kind",
        "champion_version",
        "challenger_version",
        "promotion_id",
        name="uq_comparison_tests_pair",
    ),
    CheckConstraint("status IN ('open', 'decided', 'closed')", name="status"),
    CheckConstraint("kind IN ('paired', 'delong', 'rollback_watch', 'split')", name="kind"),
)

# Which requests fed which look of a test: each request is fed to a test exactly once,
# whatever order its outputs and label arrive in.
comparison_consumed = Table(
    "comparison_consumed",
    metadata,
    Column("test_id", Integer, ForeignKey("comparison_tests.id"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("look", Integer, nullable=False),
    PrimaryKeyConstraint("test_id", "request_id"),
)

# A live-split test's running totals per unit and arm: the outcomes (rows) a unit's
# consumed requests gave and the sum of their losses. The test's delta-method variance
# needs each unit's totals before a look adds to them.
split_units = Table(
    "split_units",
    metadata,
    Column("test_id", Integer, ForeignKey("comparison_tests.id"), nullable=False),
    Column("arm", String(16), nullable=False),
    Column("unit_key", String(128), nullable=False),
    Column("n", Integer, nullable=False),
    Column("total", Float, nullable=False),
    PrimaryKeyConstraint("test_id", "arm", "unit_key"),
    CheckConstraint("arm IN ('champion', 'challenger')", name="arm"),
)

# A live split's running count of units per arm, one per model: the count's window
# (``since``, NULL from the split's start) and challenger, how far it has read (the newest
# ``received_at`` it saw; it reads on from there less the late-commit margin) and its
# totals. ``split_count_units`` holds the units it counted, so a returning unit is not
# counted twice.
split_counts = Table(
    "split_counts",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("challenger_version", Integer, nullable=False),
    Column("since", UTCDateTime, nullable=True),
    Column("read_to", UTCDateTime, nullable=True),
    Column("n_champion", Integer, nullable=False),
    Column("n_challenger", Integer, nullable=False),
)
split_count_units = Table(
    "split_count_units",
    metadata,
    Column("model", String(200), ForeignKey("split_counts.model"), nullable=False),
    Column("arm", String(16), nullable=False),
    Column("unit_key", String(128), nullable=False),
    PrimaryKeyConstraint("model", "arm", "unit_key"),
    CheckConstraint("arm IN ('champion', 'challenger')", name="arm"),
)

# Every look of every comparison: the time series dashboards draw the evidence from.
comparison_looks = Table(
    "comparison_looks",
    metadata,
    Column("id", _EventId, primary_key=True, autoincrement=True),
    Column("test_id", Integer, ForeignKey("comparison_tests.id"), nullable=False),
    Column("model", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("champion_version", Integer, nullable=False),
    Column("challenger_version", Integer, nullable=False),
    Column("method", String(32), nullable=False),
    Column("n", Integer, nullable=False),
    Column("estimate", Float, nullable=True),
    Column("ci_low", Float, nullable=True),
    Column("ci_high", Float, nullable=True),
    Column("p_value", Float, nullable=False),
    Column("adjusted_p_value", Float, nullable=False),
    Column("decision", String(32), nullable=False),
    Column("fixed_t_p", Float, nullable=True),
    Column("bootstrap_low", Float, nullable=True),
    Column("bootstrap_high", Float, nullable=True),
    Column("correction", String(16), nullable=True),
    Column("family_size", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_comparison_looks_model_challenger", "model", "challenger_version", "id"),
    Index("ix_comparison_looks_test_id_id", "test_id", "id"),  # a test's latest look
)

# Sample-ratio checks of live splits (requests answered by each arm).
split_checks = Table(
    "split_checks",
    metadata,
    Column("id", _EventId, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("champion_version", Integer, nullable=False),
    Column("challenger_version", Integer, nullable=False),
    Column("salt", String(64), nullable=False),
    Column("percent", Float, nullable=False),
    Column("n_champion", Integer, nullable=False),
    Column("n_challenger", Integer, nullable=False),
    Column("chi2", Float, nullable=False),
    Column("p_value", Float, nullable=False),
    Column("mismatch", Boolean(create_constraint=False), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The count the check judged: units received from ``since``; the split's challenger,
    # salt and share applied from ``settings_since`` (NULL: from the split's start). Both
    # NULL on checks stored before revision 0016.
    Column("since", UTCDateTime, nullable=True),
    Column("settings_since", UTCDateTime, nullable=True),
    Index("ix_split_checks_model_id", "model", "id"),
)

# The bytes of artefacts (ONNX files, reference snapshots, drift reports) by content, for
# hosts sharing a PostgreSQL store: each host's artefact directory is a cache of these.
# A SQLite store keeps none (see ``tunewatch._artefacts.ArtefactStore``).
artefacts = Table(
    "artefacts",
    metadata,
    Column("sha256", String(64), nullable=False),
    Column("suffix", String(16), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("sha256", "suffix"),
)
