"""The audit log records what happened and only that, on SQLite and PostgreSQL: retiring
a retired version writes nothing; a failed action leaves no hole in the entries' ids
(an auditor reads a missing number as a removed entry); an approval closed because its
champion changed is the store's closure, and the approver's refused attempt is audited
as ``denied_approve``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._errors import ConflictError, TunewatchError
from tunewatch._example import ExampleModel
from tunewatch.store import AuditEntry, Store
from tunewatch.store._audit import append_audit_in, entry_hash
from tunewatch.store._schema import audit_entries, audit_head
from tunewatch.store._types import utcnow


@pytest.fixture
def gov(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """credit: v1 champion, v2 shadow; loans (regulated): v1 champion, v2 and v3 shadow."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={"models": [{"name": "loans", "task": "binary", "regulated": True}]},
    )
    # a regulated model's champion is promoted; v3 is v1 of another dataset (v1 again is a
    # retry, refused `version_exists`)
    again = dataclasses.replace(trained[0].metadata, dataset_version="loans-v3")
    versions = [(m.onnx, m.metadata) for m in trained] + [(trained[0].onnx, again)]
    for onnx, metadata in versions:
        daemon.registry.register("loans", onnx, metadata, actor="test")
    first = daemon.store.request_approval(
        "loans", 1, requested_by="test", reason="the first champion", rules=["regulated model"]
    )
    daemon.store.decide_approval(first.id, approver="ci", approve=True, reason="checked")
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _post(gov: Running, path: str, role: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gov.url}{path}", json=body, headers=gov.auth(role), timeout=30)


def _newest(store: Store) -> int:
    return store.audit_log(limit=1)[0].id


def _since(store: Store, last: int) -> list[AuditEntry]:
    return [e for e in reversed(store.audit_log(limit=50)) if e.id > last]


@pytest.fixture
def versions(m_store: Store) -> Store:
    """Model ``m``: v1 champion, v2 shadow."""
    for stage, sha in (("champion", "a" * 64), ("shadow", "b" * 64)):
        m_store.add_version(
            model="m",
            artefact_sha256=sha,
            hyperparameters={},
            size_bytes=10,
            actor="ci",
            stage=stage,  # type: ignore[arg-type]
        )
    return m_store


def _ids_without_holes(store: Store) -> None:
    with store.engine.connect() as conn:
        count, first, last = conn.execute(
            sa.select(
                sa.func.count(), sa.func.min(audit_entries.c.id), sa.func.max(audit_entries.c.id)
            )
        ).one()
    assert (first, last) == (1, count), f"audit ids run {first}..{last} over {count} entries"


def test_retiring_a_retired_version_writes_nothing_and_answers_unchanged(gov: Running) -> None:
    path = f"/v1/models/{MODEL}/versions/2/retire"
    first = _post(gov, path, "operator", reason="first")
    assert first.status_code == 200, first.text
    assert (first.json()["stage"], first.json()["unchanged"]) == ("retired", False)
    store = gov.daemon.store
    last, events = _newest(store), store.list_events(model=MODEL, limit=1)
    again = _post(gov, path, "operator", reason="second")
    assert again.status_code == 200, again.text
    assert again.json()["unchanged"] is True
    assert again.json()["stage_changed_at"] == first.json()["stage_changed_at"]
    assert _since(store, last) == []
    assert store.list_events(model=MODEL, limit=1) == events
    assert store.verify_audit() is None


def test_retiring_a_retired_version_still_closes_its_pending_requests(versions: Store) -> None:
    """A request opened while the version was retired stands until the version is moved;
    retiring it again says "never serve it": the request is closed (audited), though the
    stage itself is not moved again (no ``set_stage`` entry)."""
    versions.set_stage("m", 2, "retired", actor="ops", reason="worse")
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason="bring v2 back", rules=["regulated"]
    )
    before = versions.get_version("m", 2)
    last = _newest(versions)
    row = versions.set_stage("m", 2, "retired", actor="bob", reason="never serve it")
    assert row == before
    [closed] = _since(versions, last)
    assert (closed.actor, closed.action, closed.details["approval"]) == (
        "bob",
        "approval_rejected",
        request.id,
    )
    assert versions.get_approval(request.id).status == "rejected"
    assert versions.verify_audit() is None


def test_retiring_a_champion_a_promotion_retired_is_recorded_as_a_pull(versions: Store) -> None:
    """v2 replaced v1, which the promotion retired (no ``set_stage``): an operator
    retiring v1 then says "never serve it", and a rollback must not restore it."""
    versions.promote("m", 2, actor="ops", reason="v2 won")
    last = _newest(versions)
    versions.set_stage("m", 1, "retired", actor="bob", reason="v1 leaks PII")
    [pulled] = _since(versions, last)
    assert (pulled.action, pulled.details["previous_stage"]) == ("set_stage", "retired")
    with pytest.raises(ConflictError) as info:
        versions.rollback("m", actor="ops", reason="v2 worse")
    assert info.value.code == "no_previous_champion" and "v1 leaks PII" in info.value.message
    last = _newest(versions)
    versions.set_stage("m", 1, "retired", actor="bob", reason="again")
    assert _since(versions, last) == []


def test_an_action_failing_after_its_audit_entry_leaves_no_hole_in_the_ids(
    versions: Store,
) -> None:
    """On PostgreSQL the id came from a sequence, whose values a rolled-back transaction
    does not give back: entry 4 "missing" between 3 and 5."""
    for i in range(3):
        versions.append_audit(actor="alice", action="note", target=f"m/v{i}", details={})
    with pytest.raises(RuntimeError, match="after the audit entry"):
        with versions.engine.begin() as conn:
            append_audit_in(conn, actor="alice", action="note", target="m/v9", details={})
            raise RuntimeError("the action failed after the audit entry")
    # a rollback the store refuses after writing its audit entry (a reason holding NUL
    # is refused by the event's insert)
    versions.promote("m", 2, actor="ops", reason="v2 won")
    with pytest.raises(TunewatchError):
        versions.rollback("m", actor="ops", reason="x\x00y")
    after = versions.append_audit(actor="alice", action="note", target="m/v4", details={})
    _ids_without_holes(versions)
    assert after.id == _newest(versions)
    assert versions.verify_audit() is None


def test_an_entry_inserted_with_the_column_default_does_not_collide(m_store: Store) -> None:
    """Appends give their ids explicitly; PostgreSQL's sequence is kept past them, so a
    writer that still takes the default (an older tunewatch during an upgrade) does not
    collide with an entry."""
    for i in range(3):
        m_store.append_audit(actor="alice", action="note", target=f"m/v{i}", details={})
    with m_store.engine.begin() as conn:
        prev = conn.execute(sa.select(audit_head.c.hash)).scalar_one()
        at = utcnow()
        new_hash = entry_hash(prev, at=at, actor="old", action="note", target="m", details={})
        conn.execute(
            audit_entries.insert().values(
                at=at,
                actor="old",
                action="note",
                target="m",
                details={},
                prev_hash=prev,
                hash=new_hash,
            )
        )
        conn.execute(audit_head.update().values(hash=new_hash))
    m_store.append_audit(actor="alice", action="note", target="m/v5", details={})
    _ids_without_holes(m_store)
    assert m_store.verify_audit() is None


def test_an_approval_refused_as_the_champion_changed_is_audited_as_denied(gov: Running) -> None:
    """Requests A (v2) and B (v3) against champion v1; B approved, then A: 409
    ``champion_changed``. A is closed by the store (its reason says why), and the
    approver's refused attempt is ``denied_approve``, as every 409 on approve is."""
    a = _post(gov, "/v1/models/loans/versions/2/promote", "operator", reason="v2 better")
    b = _post(gov, "/v1/models/loans/versions/3/promote", "operator", reason="v3 better")
    assert (a.status_code, b.status_code) == (202, 202), (a.text, b.text)
    a_id, b_id = a.json()["approval"]["id"], b.json()["approval"]["id"]
    ok = _post(gov, f"/v1/approvals/{b_id}/approve", "admin", reason="v3 checked")
    assert ok.status_code == 200, ok.text
    store = gov.daemon.store
    last = _newest(store)
    late = _post(gov, f"/v1/approvals/{a_id}/approve", "admin", reason="v2 checked")
    assert late.status_code == 409 and late.json()["code"] == "champion_changed", late.text
    closed, denied = _since(store, last)
    assert (closed.actor, closed.action, closed.target) == (
        "test-admin",
        "approval_rejected",
        "loans/v2",
    )
    assert closed.details["reason"] == (
        "not promoted: the champion changed from v1 to v3 since the request (v2 checked)"
    )
    assert (denied.actor, denied.action, denied.target) == (
        "test-admin",
        "denied_approve",
        "loans/v2",
    )
    assert denied.details == {
        "approval": a_id,
        "status": 409,
        "code": "champion_changed",
        "message": late.json()["error"],
        "reason": "v2 checked",
    }
    assert store.champion("loans").version == 3  # type: ignore[union-attr]
    assert store.verify_audit() is None


@pytest.mark.postgres
def test_a_role_granted_dml_and_sequence_usage_appends_gapless_entries(pg_url: str) -> None:
    """A daemon running as a role granted DML on the tables and USAGE on the sequences
    (the store migrated by its owner): moving the audit sequence level needs UPDATE on it,
    which such a role lacks, and every audited action failed "permission denied for
    sequence audit_entries_id_seq". Ids stay one past the newest all the same."""
    import psycopg
    from sqlalchemy.engine import make_url

    Store.open(pg_url).close()  # migrated by the owner
    role = f"tw_app_{uuid.uuid4().hex[:8]}"
    schema = make_url(pg_url).query["options"].split("=", 1)[1]
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        c.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        c.execute(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        c.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
    try:
        app = Store(make_url(pg_url).set(username=role).render_as_string(hide_password=False))
        try:
            ids = [
                app.append_audit(actor="a", action="t", target="m", details={"n": n}).id
                for n in range(3)
            ]
            assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
            assert app.verify_audit() is None
        finally:
            app.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP OWNED BY "{role}"')
            c.execute(f'DROP ROLE "{role}"')
