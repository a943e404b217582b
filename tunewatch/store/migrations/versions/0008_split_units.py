"""Live splits are analysed per unit: requests record their unit key, and each split test
keeps its running totals per unit.

Split tests counted requests as independent. Open ones, and decided ones that have not
acted (a promotion blocked by the sample-ratio check or still to come would act on the
old statistics), are reset (their looks stay in ``comparison_looks``) and start again on
requests that carry a unit key, which are the ones recorded from this revision on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_versions = sa.table(
    "model_versions",
    sa.column("model", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("stage", sa.String()),
)
_tests = sa.table(
    "comparison_tests",
    sa.column("id", sa.Integer()),
    sa.column("model", sa.String()),
    sa.column("champion_version", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("status", sa.String()),
    sa.column("n", sa.Integer()),
    sa.column("state", sa.JSON()),
    sa.column("decision", sa.String()),
    sa.column("outcome", sa.JSON()),
    sa.column("decided_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column("requests", sa.Column("unit_key", sa.String(128), nullable=True))
    op.create_table(
        "split_units",
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(16), nullable=False),
        sa.Column("unit_key", sa.String(128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("test_id", "arm", "unit_key", name="pk_split_units"),
        sa.ForeignKeyConstraint(
            ["test_id"], ["comparison_tests.id"], name="fk_split_units_test_id_comparison_tests"
        ),
        sa.CheckConstraint("arm IN ('champion', 'challenger')", name="ck_split_units_arm"),
    )
    conn = op.get_bind()
    champions = {
        (r.model, r.version)
        for r in conn.execute(
            sa.select(_versions.c.model, _versions.c.version).where(_versions.c.stage == "champion")
        )
    }
    rows = conn.execute(
        sa.select(
            _tests.c.id,
            _tests.c.model,
            _tests.c.champion_version,
            _tests.c.status,
            _tests.c.state,
            _tests.c.outcome,
        ).where(_tests.c.kind == "split", _tests.c.status.in_(("open", "decided")))
    ).all()
    for row in rows:
        outcome = row.outcome if isinstance(row.outcome, dict) else None
        acted = outcome is not None and outcome.get("action") != "blocked_srm"
        if row.status == "decided" and (
            acted
            or (row.outcome is not None and outcome is None)
            or (row.model, row.champion_version) not in champions  # a pair no longer tested
        ):
            continue
        state = dict(row.state)
        state.update(
            stats=[[0.0] * 6, [0.0] * 6],
            p_value=1.0,
            ci_low=None,
            ci_high=None,
            decision="continue",
            history=[],
        )
        conn.execute(
            sa.update(_tests)
            .where(_tests.c.id == row.id)
            .values(
                state=state,
                n=0,
                status="open",
                decision="continue",
                outcome=sa.null(),
                decided_at=None,
            )
        )


def downgrade() -> None:
    # Revision 0007's code reads two-sample states as (n, sum, sum of squares) per arm:
    # exact for units of one outcome each (every rollback watch); a split test whose
    # units answered several requests starts again.
    conn = op.get_bind()
    rows = conn.execute(sa.select(_tests.c.id, _tests.c.kind, _tests.c.state)).all()
    for row in rows:
        state = dict(row.state)
        stats: list[list[float]] = state.get("stats") or [[]]
        if state.get("kind") != "two_sample_sequential_test" or len(stats[0]) != 6:
            continue
        values: dict[str, object]
        if all(arm[0] == arm[1] for arm in stats):  # units == outcomes
            state["stats"] = [[arm[0], arm[2], arm[4]] for arm in stats]
            values = {"state": state}
        else:
            state.update(
                stats=[[0.0] * 3, [0.0] * 3],
                p_value=1.0,
                ci_low=None,
                ci_high=None,
                decision="continue",
                history=[],
            )
            values = {"state": state, "n": 0}
        conn.execute(sa.update(_tests).where(_tests.c.id == row.id).values(**values))
    op.drop_table("split_units")
    with _labels_set_aside(), op.batch_alter_table("requests") as batch:
        batch.drop_column("unit_key")


_LABEL_COLUMNS = "model, request_id, value, outcome, received_at"


@contextmanager
def _labels_set_aside() -> Iterator[None]:
    """Rebuild ``requests`` in the block (SQLite: a batch copies it into a new table).

    SQLite cannot drop a table that rows of another table refer to while foreign keys
    are on, and cannot turn them off in a transaction; deferring them (revision 0013's
    ``PRAGMA defer_foreign_keys``) is not enough here, since the labels of the dropped
    rows would still count as violations at the commit. ``labels`` (at this revision
    the only table referring to ``requests``, and far smaller) is set aside and emptied
    before the block and put back after it, checked against the new table."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    # Untyped columns: no affinity, so each value comes back exactly as it was stored.
    op.execute(f"CREATE TEMP TABLE _labels_kept ({_LABEL_COLUMNS})")
    op.execute(f"INSERT INTO _labels_kept SELECT {_LABEL_COLUMNS} FROM labels")
    op.execute("DELETE FROM labels")
    yield
    op.execute(f"INSERT INTO labels ({_LABEL_COLUMNS}) SELECT {_LABEL_COLUMNS} FROM _labels_kept")
    op.execute("DROP TABLE _labels_kept")
