"""A hyperparameter set is the pipeline it builds; each version keeps its own record.

A set's id was the hash of the parameters as recorded, and a version read its
parameters from its set, so one pipeline had one id per spelling: per search space that
tuned it (each records the names it declares), another registered by hand, and ``C: 1``
apart from ``C: 1.0``. A set is now :func:`tunewatch.store._canonical.set_identity` of
a record (the pipeline it builds, or the record itself when it names no estimator or
the pipeline would not build it so) and its id the hash of that. Each version first
gains its own record (``model_versions.hyperparameters``, copied from its set), then
each stored set whose id changes moves to its new id with its versions, the sets of one
pipeline merged. The audit log's entries keep the ids they were written with (it is
hash-chained), and Prometheus' ``hyperparameter_set`` label takes the new id at the next
scrape. A downgrade puts every version back on the set of its own record's spelling.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tunewatch.store._canonical import canonical_json, set_identity

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_model_versions_hyperparameter_set_id"
_sets = sa.table(
    "hyperparameter_sets",
    sa.column("id", sa.String),
    sa.column("params", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_versions = sa.table(
    "model_versions",
    sa.column("id", sa.Integer),
    sa.column("hyperparameter_set_id", sa.String),
    sa.column("hyperparameters", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _hash(params: object) -> str:
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()


def upgrade() -> None:
    # each set's versions are moved (and the foreign key checked as its old row goes)
    # through this index: without it each move scanned every version, and 16,000 versions
    # on their own sets took 70 s on SQLite and 125 s on PostgreSQL (6 s with it)
    op.create_index(_INDEX, "model_versions", ["hyperparameter_set_id"], if_not_exists=True)
    op.add_column("model_versions", sa.Column("hyperparameters", sa.JSON, nullable=True))
    conn = op.get_bind()
    own_set = (
        sa.select(_sets.c.params)
        .where(_sets.c.id == _versions.c.hyperparameter_set_id)
        .scalar_subquery()
    )
    conn.execute(_versions.update().values(hyperparameters=own_set))
    rows = conn.execute(
        sa.select(_sets.c.id, _sets.c.params, _sets.c.created_at).order_by(
            _sets.c.created_at, _sets.c.id
        )
    ).all()
    stored = {row.id for row in rows}
    added: list[dict[str, object]] = []
    moves: list[dict[str, str]] = []
    for row in rows:
        identity = set_identity(row.params)
        new = _hash(identity)
        if new == row.id:  # its record is its identity
            continue
        if new not in stored:
            added.append({"id": new, "params": identity, "created_at": row.created_at})
            stored.add(new)
        moves.append({"old": row.id, "new": new})
    if added:
        conn.execute(_sets.insert(), added)
    _move(conn, moves)
    _delete_sets(conn, [move["old"] for move in moves])


def downgrade() -> None:
    """Every version back on the set of its own record's spelling (the id the older
    release hashes), the sets no version is on deleted, then the records' column."""
    conn = op.get_bind()
    stored = set(conn.execute(sa.select(_sets.c.id)).scalars())
    versions = conn.execute(
        sa.select(
            _versions.c.id,
            _versions.c.hyperparameter_set_id,
            _versions.c.hyperparameters,
            _versions.c.created_at,
        )
    ).all()
    added: list[dict[str, object]] = []
    moved: list[dict[str, object]] = []
    for version in versions:
        if version.hyperparameters is None:
            continue  # registered by the older release after a downgrade: on its set
        spelt = _hash(version.hyperparameters)
        if spelt not in stored:
            added.append(
                {"id": spelt, "params": version.hyperparameters, "created_at": version.created_at}
            )
            stored.add(spelt)
        if spelt != version.hyperparameter_set_id:
            moved.append({"version_id": version.id, "new": spelt})
    if added:
        conn.execute(_sets.insert(), added)
    if moved:
        conn.execute(
            _versions.update()
            .where(_versions.c.id == sa.bindparam("version_id"))
            .values(hyperparameter_set_id=sa.bindparam("new")),
            moved,
        )
    used = set(conn.execute(sa.select(_versions.c.hyperparameter_set_id)).scalars())
    _delete_sets(conn, sorted(stored - used))
    op.execute("ALTER TABLE model_versions DROP COLUMN hyperparameters")
    op.drop_index(_INDEX, table_name="model_versions")


def _move(conn: sa.Connection, moves: list[dict[str, str]]) -> None:
    """Each set's versions from its ``old`` id to its ``new`` one, in one executemany."""
    if moves:
        conn.execute(
            _versions.update()
            .where(_versions.c.hyperparameter_set_id == sa.bindparam("old"))
            .values(hyperparameter_set_id=sa.bindparam("new")),
            moves,
        )


def _delete_sets(conn: sa.Connection, ids: list[str]) -> None:
    for start in range(0, len(ids), 1_000):
        conn.execute(_sets.delete().where(_sets.c.id.in_(ids[start : start + 1_000])))
