"""The audit log cannot be rewritten through an INSERT, and its head only moves forward.

SQLite's ``INSERT OR REPLACE`` deletes the row it conflicts with (on ``id`` or ``hash``)
without firing DELETE triggers (recursive triggers are off), so an entry could be
rewritten, with a recomputed hash, past the UPDATE and DELETE triggers of revision 0001.
SQLite now refuses an INSERT whose id or hash an entry already has (before it, so
REPLACE never deletes) and one whose id is not above every other entry's (after it, when
the id is known). On PostgreSQL ``INSERT ... ON CONFLICT DO UPDATE`` fires the UPDATE
trigger, which already refuses it; both backends have a test.

On both backends ``audit_head`` now moves only forward: an UPDATE must set it to the hash
of an entry whose ``prev_hash`` is the old head (what every append does, after inserting
that entry); INSERT, DELETE and TRUNCATE are refused (the row exists since 0001).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEAD_REFUSED = "audit_head only moves forward"

_SQLITE_TRIGGERS = {
    # BEFORE: REPLACE resolves its conflict (deleting the old row) after BEFORE triggers.
    "audit_entries_no_replace": (
        "BEFORE INSERT ON audit_entries "
        "WHEN EXISTS (SELECT 1 FROM audit_entries WHERE id = NEW.id) "
        "OR EXISTS (SELECT 1 FROM audit_entries WHERE hash = NEW.hash) "
        "BEGIN SELECT RAISE(ABORT, "
        "'audit_entries is append-only: INSERT over an existing entry refused'); END"
    ),
    # AFTER: in a BEFORE INSERT trigger an id SQLite assigns is not known yet (-1).
    "audit_entries_in_order": (
        "AFTER INSERT ON audit_entries "
        "WHEN EXISTS (SELECT 1 FROM audit_entries WHERE id > NEW.id) "
        "BEGIN SELECT RAISE(ABORT, "
        "'audit_entries is append-only: INSERT before the last entry refused'); END"
    ),
    "audit_head_forward_only": (
        "BEFORE UPDATE ON audit_head "
        "WHEN NEW.id IS NOT OLD.id OR NOT EXISTS (SELECT 1 FROM audit_entries "
        "WHERE hash = NEW.hash AND prev_hash = OLD.hash) "
        f"BEGIN SELECT RAISE(ABORT, '{_HEAD_REFUSED}: UPDATE to a hash that does not "
        "chain to the old head refused'); END"
    ),
    "audit_head_no_insert": (
        f"BEFORE INSERT ON audit_head BEGIN SELECT RAISE(ABORT, '{_HEAD_REFUSED}: "
        "INSERT refused'); END"
    ),
    "audit_head_no_delete": (
        f"BEFORE DELETE ON audit_head BEGIN SELECT RAISE(ABORT, '{_HEAD_REFUSED}: "
        "DELETE refused'); END"
    ),
}

# The entries are looked up in the trigger's own schema, whatever the search_path.
_PG_FUNCTION = f"""
CREATE FUNCTION tunewatch_audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chained boolean := false;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM %I.audit_entries WHERE hash = $1 AND prev_hash = $2)',
            TG_TABLE_SCHEMA
        ) INTO chained USING NEW.hash, OLD.hash;
        IF chained THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION USING
            MESSAGE = '{_HEAD_REFUSED}: UPDATE to a hash that does not chain to the old head '
                || 'refused',
            ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION USING
        MESSAGE = '{_HEAD_REFUSED}: ' || TG_OP || ' refused',
        ERRCODE = 'integrity_constraint_violation';
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_head_forward_only BEFORE INSERT OR UPDATE OR DELETE "
            "ON audit_head FOR EACH ROW EXECUTE FUNCTION tunewatch_audit_head_forward_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION tunewatch_audit_head_forward_only()"
        )
    else:
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_head_no_truncate ON audit_head")
        op.execute("DROP TRIGGER audit_head_forward_only ON audit_head")
        op.execute("DROP FUNCTION tunewatch_audit_head_forward_only()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
