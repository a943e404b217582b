"""A rollback watch follows one promotion: ``comparison_tests.promotion_id``.

A test was unique per (model, kind, champion, challenger), so promoting the same version
over the same champion a second time (v1 -> v2, back to v1, v2 again) found the first
promotion's closed watch and started none: the replaced champion was retired at once and
a worse new one was never rolled back. ``promotion_id`` (the ``promoted`` event a watch
follows; 0 for the other kinds, tested once per champion) joins the unique key.

Each existing watch gets the promotion it was started for: the pair's promotion at the
time its state records (``promoted_at``), else the pair's newest promotion before the
watch was created. A downgrade keeps each pair's newest watch;
the older ones are deleted with their looks and consumed requests, since the older key
holds one test per pair (the events of what they did stay).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PAIR = ("model", "kind", "champion_version", "challenger_version")

_tests = sa.table(
    "comparison_tests",
    sa.column("id", sa.Integer()),
    sa.column("model", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("champion_version", sa.Integer()),
    sa.column("challenger_version", sa.Integer()),
    sa.column("state", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("promotion_id", _EventId),
)
_events = sa.table(
    "events",
    sa.column("id", _EventId),
    sa.column("model", sa.String()),
    sa.column("type", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_children = ("comparison_looks", "comparison_consumed", "split_units")
_COLUMNS = (
    "id, model, kind, champion_version, challenger_version, status, decision, correction, "
    "n, looks, state, outcome, created_at, updated_at, decided_at"
)


@contextmanager
def _rebuilt() -> Iterator[None]:
    """Rebuild ``comparison_tests`` in the block (SQLite: a batch copies it into a new
    table). SQLite cannot drop a table that rows of another table refer to while foreign
    keys are on, and cannot turn them off in a transaction: the rows are set aside and
    the table emptied (the children's references wait, deferred) before the block, and
    put back into the new table after it, which settles them before the commit."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("PRAGMA defer_foreign_keys = ON")  # until the transaction ends
    op.execute(
        f"CREATE TEMP TABLE _comparison_tests_kept AS SELECT {_COLUMNS} FROM comparison_tests"
    )
    op.execute("DELETE FROM comparison_tests")
    yield
    op.execute(
        f"INSERT INTO comparison_tests ({_COLUMNS}) SELECT {_COLUMNS} FROM _comparison_tests_kept"
    )
    op.execute("DROP TABLE _comparison_tests_kept")


def upgrade() -> None:
    with _rebuilt(), op.batch_alter_table("comparison_tests") as batch:
        batch.add_column(
            sa.Column("promotion_id", _EventId, nullable=False, server_default=sa.text("0"))
        )
        batch.drop_constraint("uq_comparison_tests_pair", type_="unique")
        batch.create_unique_constraint("uq_comparison_tests_pair", [*_PAIR, "promotion_id"])
    conn = op.get_bind()
    watches = conn.execute(
        sa.select(
            _tests.c.id,
            _tests.c.model,
            _tests.c.champion_version,
            _tests.c.challenger_version,
            _tests.c.state,
            _tests.c.created_at,
        ).where(_tests.c.kind == "rollback_watch")
    ).all()
    for watch in watches:
        promotions = [  # the pair's, newest first
            (int(event.id), _utc(event.created_at))
            for event in conn.execute(
                sa.select(_events.c.id, _events.c.payload, _events.c.created_at)
                .where(_events.c.model == watch.model, _events.c.type == "promoted")
                .order_by(_events.c.id.desc())
            )
            if isinstance(event.payload, dict)
            and (event.payload.get("previous"), event.payload.get("version"))
            == (watch.champion_version, watch.challenger_version)
        ]
        state = watch.state if isinstance(watch.state, dict) else {}
        promoted_at = state.get("promoted_at")
        at = _utc(datetime.fromisoformat(promoted_at)) if isinstance(promoted_at, str) else None
        created = _utc(watch.created_at)
        found = [i for i, when in promotions if when == at] or [
            i for i, when in promotions if when <= created
        ]
        if found:
            conn.execute(
                sa.update(_tests).where(_tests.c.id == watch.id).values(promotion_id=found[0])
            )


def _utc(value: datetime) -> datetime:
    """Naive UTC (SQLite returns the stored naive UTC, PostgreSQL an aware time)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def downgrade() -> None:
    conn = op.get_bind()
    newest = sa.select(sa.func.max(_tests.c.id)).group_by(*(_tests.c[name] for name in _PAIR))
    older = [
        row.id for row in conn.execute(sa.select(_tests.c.id).where(_tests.c.id.not_in(newest)))
    ]
    if older:
        for child in _children:
            table = sa.table(child, sa.column("test_id", sa.Integer()))
            conn.execute(sa.delete(table).where(table.c.test_id.in_(older)))
        conn.execute(sa.delete(_tests).where(_tests.c.id.in_(older)))
    with _rebuilt(), op.batch_alter_table("comparison_tests") as batch:
        batch.drop_constraint("uq_comparison_tests_pair", type_="unique")
        batch.create_unique_constraint("uq_comparison_tests_pair", list(_PAIR))
        batch.drop_column("promotion_id")
