"""A hyperparameter set's id is the hash of the pipeline it builds: the sets stored before
are re-keyed, and those of one pipeline merged.

The id was the hash of the set as recorded, so one pipeline had one id per spelling: per
search space that tuned it (each records the names it declares), another registered by
hand, and ``C: 1`` apart from ``C: 1.0``. It is now the hash of
:func:`retune.space.pipeline_parameters` (the set as recorded when the pipeline would not
build it so: a model trained elsewhere, ``{}``), computed as
:func:`tunewatch.store.hyperparameter_set_id` computes it now. Each stored set whose id
changes moves to its new id, its versions with it; sets that become one keep the
parameters of the first stored (a version shows the parameters of its set). The audit
log's entries keep the ids they were written with (it is hash-chained), and Prometheus'
``hyperparameter_set`` label takes the new id at the next scrape. A downgrade keeps the
new ids: the older release registers new sets under the hash of their spelling.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tunewatch.store._canonical import hyperparameter_set_id

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_sets = sa.table(
    "hyperparameter_sets",
    sa.column("id", sa.String),
    sa.column("params", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_versions = sa.table("model_versions", sa.column("hyperparameter_set_id", sa.String))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_sets.c.id, _sets.c.params, _sets.c.created_at).order_by(
            _sets.c.created_at, _sets.c.id
        )
    ).all()
    stored = {row.id for row in rows}
    for row in rows:
        new = hyperparameter_set_id(row.params)
        if new == row.id:
            continue
        if new not in stored:  # the first stored of its pipeline keeps its parameters
            conn.execute(
                _sets.insert().values(id=new, params=row.params, created_at=row.created_at)
            )
            stored.add(new)
        conn.execute(
            _versions.update()
            .where(_versions.c.hyperparameter_set_id == row.id)
            .values(hyperparameter_set_id=new)
        )
        conn.execute(_sets.delete().where(_sets.c.id == row.id))


def downgrade() -> None:
    """The re-keyed ids stay: the spellings merged cannot be told apart again."""
