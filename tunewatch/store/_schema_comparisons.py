"""The comparison tables: sequential tests of a challenger against the champion, the
requests each look consumed, every look's evidence, and a live split's per-unit totals,
unit counts and sample-ratio checks.

Declared on the store's one ``metadata``; importing ``tunewatch.store._schema`` (which
re-exports these tables) is what registers them, so reach them through it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    text,
)

from ._schema_types import UTCDateTime, _EventId, metadata

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
# whatever order its outputs and label arrive in. The purge deletes a request's rows with
# it, found by the request.
comparison_consumed = Table(
    "comparison_consumed",
    metadata,
    Column("test_id", Integer, ForeignKey("comparison_tests.id"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("look", Integer, nullable=False),
    PrimaryKeyConstraint("test_id", "request_id"),
    Index("ix_comparison_consumed_request_id", "request_id"),
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
