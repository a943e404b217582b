"""The audit log cannot be rewritten in place, and verification compares its end with
``audit_head`` (contract suite: SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tunewatch.store import AuditEntry, Store
from tunewatch.store._audit import entry_hash
from tunewatch.store._engine import dialect_insert
from tunewatch.store._schema import audit_entries, audit_head


def _entries(store: Store, n: int = 3) -> list[AuditEntry]:
    return [
        store.append_audit(actor="alice", action="promote", target=f"m/v{i}", details={"i": i})
        for i in range(1, n + 1)
    ]


def _row(entry: AuditEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _forged(entry: AuditEntry, **changes: object) -> dict[str, object]:
    """``entry`` with ``changes`` and a hash recomputed over them: it chains as well as
    the original did."""
    forged = replace(entry, **changes)  # type: ignore[arg-type]
    new_hash = entry_hash(
        forged.prev_hash,
        at=forged.at,
        actor=forged.actor,
        action=forged.action,
        target=forged.target,
        details=forged.details,
    )
    return _row(replace(forged, hash=new_hash))


def _bypass_triggers(conn: sa.Connection) -> None:
    """Tamper as the database owner would: SQLite's triggers dropped, PostgreSQL's not
    fired for the rest of the transaction (superuser)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        return
    names = conn.execute(
        sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('audit_entries', 'audit_head')"
        )
    ).scalars()
    for name in list(names):
        conn.execute(sa.text(f'DROP TRIGGER "{name}"'))


def _refused(store: Store, statement: sa.Executable, match: str = "append-only") -> None:
    with pytest.raises(IntegrityError, match=match), store.engine.begin() as conn:
        conn.execute(statement)


# -- rewriting through an INSERT ------------------------------------------------------------


def test_an_upsert_cannot_rewrite_an_entry(store: Store) -> None:
    """``INSERT ... ON CONFLICT DO UPDATE`` updates the row: the UPDATE trigger refuses it
    on both backends."""
    entries = _entries(store)
    same_id = _forged(entries[1], actor="mallory")
    same_hash = {**_forged(entries[2], actor="mallory"), "id": 99, "hash": entries[2].hash}
    for key, values in ((audit_entries.c.id, same_id), (audit_entries.c.hash, same_hash)):
        with store.engine.connect() as conn:
            stmt = (
                dialect_insert(conn, audit_entries)
                .values(**values)
                .on_conflict_do_update(index_elements=[key], set_={"actor": "mallory"})
            )
        _refused(store, stmt)
    assert store.audit_log() == entries[::-1]
    assert store.verify_audit() is None


def test_insert_or_replace_cannot_rewrite_or_remove_an_entry(sqlite_url: str) -> None:
    """SQLite's REPLACE deletes the conflicting row without firing DELETE triggers: an
    INSERT over an existing id or hash, or below the last id, is refused."""
    store = Store.open(sqlite_url)
    try:
        entries = _entries(store)
        replace_ = sa.insert(audit_entries).prefix_with("OR REPLACE")
        last, middle = entries[2], entries[1]
        _refused(store, replace_.values(**_forged(last, actor="mallory")))
        _refused(store, replace_.values(**_forged(middle, details={"i": 99})))
        # a new id whose hash is an existing entry's: REPLACE would delete that entry
        other = _forged(last, actor="x")
        _refused(store, replace_.values(**{**other, "id": 99, "hash": middle.hash}))
        # an id below the last one, in no conflict with any row
        _refused(store, sa.insert(audit_entries).values(**{**other, "id": 0}))
        assert store.audit_log() == entries[::-1]
        assert store.verify_audit() is None
        assert store.append_audit(actor="bob", action="x", target="t", details={}).id == 4
        assert store.verify_audit() is None
    finally:
        store.close()


# -- the chain head ---------------------------------------------------------------------------


def test_audit_head_only_moves_forward_along_the_chain(store: Store) -> None:
    entries = _entries(store)
    match = "audit_head only moves forward"
    for hash_ in ("f" * 64, entries[1].hash, entries[0].hash, "0" * 64):
        _refused(store, sa.update(audit_head).values(hash=hash_), match)
    _refused(store, sa.delete(audit_head), match)
    with store.engine.connect() as conn:
        upsert = (
            dialect_insert(conn, audit_head)
            .values(id=1, hash=entries[1].hash)
            .on_conflict_do_update(index_elements=[audit_head.c.id], set_={"hash": "f" * 64})
        )
    _refused(store, upsert, match)
    if store.dialect == "sqlite":
        _refused(
            store,
            sa.insert(audit_head).prefix_with("OR REPLACE").values(id=1, hash=entries[1].hash),
            match,
        )
    else:
        _refused(store, sa.text("TRUNCATE audit_head"), match)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(audit_head.c.hash)).scalar_one() == entries[2].hash
    appended = store.append_audit(actor="bob", action="x", target="t", details={})
    assert appended.prev_hash == entries[2].hash
    assert store.verify_audit() is None


# -- verification against the head ----------------------------------------------------------


def test_verify_audit_reports_removed_newest_entries(store: Store) -> None:
    entries = _entries(store, 4)
    with store.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(sa.delete(audit_entries).where(audit_entries.c.id >= entries[2].id))
    broken = store.verify_audit()
    assert broken is not None
    assert (broken.kind, broken.entry_id) == ("head", entries[1].id)
    assert entries[1].hash in broken.message and entries[3].hash in broken.message
    assert f"entry {entries[1].id}" in broken.message


def test_verify_audit_reports_a_rewritten_last_entry(store: Store) -> None:
    """The rewritten entry chains and its hash recomputes: only the head tells."""
    entries = _entries(store)
    with store.engine.begin() as conn:
        _bypass_triggers(conn)
        forged = _forged(entries[2], actor="mallory")
        conn.execute(
            sa.update(audit_entries)
            .where(audit_entries.c.id == entries[2].id)
            .values(actor=forged["actor"], hash=forged["hash"])
        )
    assert store.audit_log(1)[0].actor == "mallory"
    broken = store.verify_audit()
    assert broken is not None
    assert (broken.kind, broken.entry_id) == ("head", entries[2].id)
    assert str(forged["hash"]) in broken.message and entries[2].hash in broken.message


def test_verify_audit_reports_an_emptied_log(store: Store) -> None:
    entries = _entries(store, 2)
    with store.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(sa.delete(audit_entries))
    broken = store.verify_audit()
    assert broken is not None
    assert (broken.kind, broken.entry_id) == ("head", None)
    assert entries[1].hash in broken.message and "no entries" in broken.message


def test_verify_audit_reports_entries_appended_past_the_head(store: Store) -> None:
    entries = _entries(store, 2)
    with store.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(sa.update(audit_head).values(hash=entries[0].hash))
    broken = store.verify_audit()
    assert broken is not None
    assert (broken.kind, broken.entry_id) == ("head", entries[1].id)
    assert f"entry {entries[0].id}" in broken.message


def test_verify_audit_names_the_entry_that_does_not_chain(store: Store) -> None:
    entries = _entries(store)
    with store.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(sa.delete(audit_entries).where(audit_entries.c.id == entries[1].id))
    broken = store.verify_audit()
    assert broken is not None
    assert (broken.kind, broken.entry_id) == ("prev_hash", entries[2].id)
    assert entries[0].hash in broken.message and entries[1].hash in broken.message


def test_an_empty_log_with_the_initial_head_verifies(store: Store) -> None:
    assert store.verify_audit() is None


# -- rows a tamperer left unreadable (SQLite: its columns hold any type) ----------------------

UNREADABLE = {
    "actor_a_blob": ("actor = CAST('mallory' AS BLOB)", "actor", "stored as a BLOB, not text"),
    "actor_not_utf8": ("actor = CAST(X'6D616CFF' AS TEXT)", "actor", "not UTF-8"),
    "details_a_number": ("details = 7", "details", "stored as an INTEGER, not text"),
    "details_not_json": ("details = '{not json'", "details", "not JSON"),
    "details_a_list": ("details = '[1, 2]'", "details", "not a JSON object"),
    "at_not_a_time": ("at = 'yesterday'", "at", "not a time"),
    "at_with_a_suffix": ("at = at || ' tampered'", "at", "not a time"),
}


@pytest.mark.parametrize(("change", "column", "why"), UNREADABLE.values(), ids=UNREADABLE)
def test_an_unreadable_entry_is_a_break_and_is_listed(
    sqlite_url: str, change: str, column: str, why: str
) -> None:
    """A row rewritten with a value of another type (the triggers dropped first) crashed
    the check and the listing: TypeError, JSONDecodeError, ValueError, or a UTF-8 error
    read as 'database unavailable'; GET /v1/audit answered 500 or 503."""
    with Store.open(sqlite_url) as store:
        entries = _entries(store, 4)
        with store.engine.begin() as conn:
            _bypass_triggers(conn)
            conn.execute(
                sa.text(f"UPDATE audit_entries SET {change} WHERE id = :id"), {"id": entries[1].id}
            )
        broken = store.verify_audit()
        assert broken is not None
        assert (broken.kind, broken.entry_id) == ("unreadable", entries[1].id)
        assert f"audit entry {entries[1].id} is unreadable" in broken.message
        assert f"`{column}`" in broken.message and why in broken.message
        listed = store.audit_log()
        assert [e.id for e in listed] == [e.id for e in reversed(entries)]
        assert listed[0] == entries[3] and listed[3] == entries[0]  # the others as stored
        shown = listed[2]
        assert shown.id == entries[1].id and shown.prev_hash == entries[1].prev_hash
        assert why in shown.details["unreadable"][column]
        assert set(shown.details["unreadable"]) == {column}
        if column != "details":
            assert shown.details["details"] == entries[1].details
        if column != "actor":
            assert shown.actor == "alice"
        else:
            assert shown.actor == "<unreadable>"
        if column == "at":
            assert shown.at == datetime(1970, 1, 1, tzinfo=UTC)
        else:
            assert shown.at == entries[1].at
        assert store.audit_log(actor="alice", limit=2)[0] == entries[3]
