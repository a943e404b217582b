"""The store's tables: one ``MetaData``, mirrored by the Alembic migrations.

Every table is reachable from here (``from tunewatch.store._schema import jobs``), and
importing this module is what puts them all on ``metadata`` (Alembic's ``env.py`` does
just that). The registry, scoring-log, audit, access, evaluation, alert, job and artefact
tables are declared below; the rest live by concept and are re-exported:

- ``_schema_types``: ``metadata`` with its naming convention, the column types
  (``UTCDateTime``, ``ScalarJSON``) and the shared constants (``ZERO_HASH``, ``MAX_ID``);
- ``_schema_comparisons``: the sequential comparisons and live splits
  (``comparison_tests``, ``comparison_consumed``, ``comparison_looks``, ``split_units``,
  ``split_counts``, ``split_count_units``, ``split_checks``).

A new table goes into the module of its concept, on the same ``metadata``, and gets a
migration under ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ._schema_comparisons import comparison_consumed as comparison_consumed
from ._schema_comparisons import comparison_looks as comparison_looks
from ._schema_comparisons import comparison_tests as comparison_tests
from ._schema_comparisons import split_checks as split_checks
from ._schema_comparisons import split_count_units as split_count_units
from ._schema_comparisons import split_counts as split_counts
from ._schema_comparisons import split_units as split_units
from ._schema_types import MAX_ID as MAX_ID
from ._schema_types import ZERO_HASH as ZERO_HASH
from ._schema_types import ScalarJSON as ScalarJSON
from ._schema_types import UTCDateTime as UTCDateTime
from ._schema_types import _EventId, _in
from ._schema_types import metadata as metadata
from ._types import ROLES, SOURCES, STAGES, TASKS

if TYPE_CHECKING:
    from sqlalchemy.engine.default import DefaultExecutionContext

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

#: Each configured model's promotion safe ranges, as canonical JSON (``_safe_ranges``):
#: written by a daemon from its config when it starts, read by every promotion, whichever
#: process's config it runs under. By name, not a key of ``models``: the daemon stores the
#: ranges of a model its config lists before the model's first version registers.
promotion_safe_ranges = Table(
    "promotion_safe_ranges",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("ranges", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

hyperparameter_sets = Table(
    "hyperparameter_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("params", JSON, nullable=False),  # what the id hashes: _canonical.set_identity
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
    # the hyperparameters as registered (0027; the set holds the pipeline they build); NULL
    # only for a version a replica of an older release registered during a rolling
    # upgrade, whose set (of its spelling) holds its record
    Column("hyperparameters", JSON, nullable=True),
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
    Index("ix_model_versions_hyperparameter_set_id", "hyperparameter_set_id"),  # a set's (0027)
)

#: People's key/value tags on a version (``ticket=RISK-123``), one row per key, within the
#: convention :mod:`tunewatch._tag_rules` checks; each change is audited (``_version_tags``).
version_tags = Table(
    "version_tags",
    metadata,
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", String(256), nullable=False),
    Column("set_by", String(200), nullable=False),
    Column("set_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "version", "key"),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
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
    Index("ix_events_type_id", "type", "id"),  # any model's newest of a type (0026)
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


def _token_name_key(context: DefaultExecutionContext) -> str:
    """A token's ``name_key`` from its ``name``, for an insert that does not give it."""
    from ._tokens import token_name_key  # _tokens writes this table: it imports this module

    row = context.get_current_parameters()  # type: ignore[no-untyped-call]  # SQLAlchemy's
    return token_name_key(row["name"])


# A token's name, and its key: the name NFKC- and case-folded, hashed (_tokens.token_name_key),
# so that one name is taken however Unicode spells it (revision 0022).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("name_key", String(64), nullable=False, unique=True, default=_token_name_key),
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
    # the deadline of the limit it was made under (0025); NULL: none, or made before 0025
    Column("expires_at", UTCDateTime, nullable=True),
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
