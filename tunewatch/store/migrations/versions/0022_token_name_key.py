"""A token's name is taken however Unicode spells it: ``api_tokens.name_key``, unique.

Names were compared exactly, so ``josé`` typed precomposed (NFC) and ``jose`` with a
combining acute (NFD) were two tokens that print alike in ``tokens list`` and the audit
log: revoking ``josé`` left the other active. Each token now stores its name's key, the
sha256 of the name NFKC-normalised and case-folded (``tunewatch.store._tokens
.token_name_key``, copied below as of this revision), under a unique constraint, so the
database refuses a second token of the name even from a concurrent create.

Each existing token gets its name's key, but for lookalikes created before: of a group
whose names fold to one, the first (lowest id) holds the key and each later one a key of
its own (of its folded name and its id: no name's key, since no name holds a NUL), so
every token stays as it was, and a warning names them for the operator to revoke the ones
not meant. A downgrade drops the column.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("tunewatch.store.migrations")

_tokens = sa.table(
    "api_tokens",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
)
_COLUMNS = "id, name, role, token_hash, created_at, revoked_at"


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _key(folded: str) -> str:
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


@contextmanager
def _rebuilt(columns: str) -> Iterator[None]:
    """Rebuild ``api_tokens`` in the block (SQLite: a batch copies it into a new table).

    SQLite cannot drop a table that rows of another table refer to (``dashboard_sessions``
    by name) while foreign keys are on, nor turn them off in a transaction: the tokens
    are set aside and the table emptied (the sessions' references wait, deferred) before
    the block, and put back into the new table after it, which settles them before the
    commit (as revision 0013 does for ``comparison_tests``)."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("PRAGMA defer_foreign_keys = ON")  # until the transaction ends
    # Untyped columns: no affinity, so each value comes back exactly as it was stored.
    op.execute(f"CREATE TEMP TABLE _api_tokens_kept ({columns})")
    op.execute(f"INSERT INTO _api_tokens_kept SELECT {columns} FROM api_tokens")
    op.execute("DELETE FROM api_tokens")
    yield
    op.execute(f"INSERT INTO api_tokens ({columns}) SELECT {columns} FROM _api_tokens_kept")
    op.execute("DROP TABLE _api_tokens_kept")


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("name_key", sa.String(64), nullable=True))
    conn = op.get_bind()
    first: dict[str, tuple[int, str]] = {}  # folded name -> (id, name) holding its key
    lookalikes: list[str] = []
    for token_id, name in conn.execute(
        sa.select(_tokens.c.id, _tokens.c.name).order_by(_tokens.c.id)
    ):
        folded = _folded(name)
        if folded in first:
            held_by, held_name = first[folded]
            key = _key(f"{folded}\0{token_id}")
            lookalikes.append(f"{name!a} (id {token_id}) reads as {held_name!a} (id {held_by})")
        else:
            first[folded] = (token_id, name)
            key = _key(folded)
        conn.execute(sa.update(_tokens).where(_tokens.c.id == token_id).values(name_key=key))
    with _rebuilt(f"{_COLUMNS}, name_key"), op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("name_key", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_api_tokens_name_key", ["name_key"])
    if lookalikes:
        logger.warning(
            "API tokens stored before revision 0022 under a name that reads as another "
            "token's (the same once Unicode compatibility forms and case are folded): %s. "
            "Each is still its own token, and no new token takes a name that reads as "
            "theirs; revoke those not meant (`tunewatch tokens revoke <name>`)",
            "; ".join(lookalikes),
        )


def downgrade() -> None:
    with _rebuilt(_COLUMNS), op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("uq_api_tokens_name_key", type_="unique")
        batch.drop_column("name_key")
