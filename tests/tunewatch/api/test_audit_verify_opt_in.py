"""``GET /v1/audit`` verifies the whole hash chain only when asked (``?verify=true``).

It re-hashed every entry of the log on every request, ``?limit=1`` too: at 100k entries a
page took seconds (``/v1/events`` took 0.08 s) and a viewer polling it held the GIL long
enough to triple scoring latency. A page now costs what the page costs; the chain is
checked on request, and ``tunewatch audit`` still checks it whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.store import AuditBreak


@pytest.fixture
def audited(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path, trained)
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


@pytest.fixture
def verify_calls(audited: Running, monkeypatch: pytest.MonkeyPatch) -> list[AuditBreak | None]:
    """What each call of the daemon's real ``Store.verify_audit`` returned."""
    store = audited.daemon.store
    assert audited.daemon.runtime.store is store
    real = store.verify_audit
    calls: list[AuditBreak | None] = []

    def counted() -> AuditBreak | None:
        calls.append(real())
        return calls[-1]

    monkeypatch.setattr(store, "verify_audit", counted)
    return calls


def _audit(running: Running, query: str = "") -> httpx.Response:
    return httpx.get(f"{running.url}/v1/audit{query}", headers=running.auth("viewer"))


def _remove_newest_entry(running: Running) -> tuple[int, int]:
    """Delete the newest audit entry past its trigger: the log no longer ends at its
    head. Returns the removed entry's id and the id of the one before it."""
    store = running.daemon.store
    newest, before = store.audit_log(limit=2)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER audit_entries_no_delete"))
        conn.execute(sa.text("DELETE FROM audit_entries WHERE id = :id"), {"id": newest.id})
    return newest.id, before.id


def test_a_page_of_the_audit_log_does_not_verify_the_chain(
    audited: Running, verify_calls: list[AuditBreak | None]
) -> None:
    for query in ("", "?limit=1", "?verify=false"):
        r = _audit(audited, query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["entries"], query
        assert body["chain_intact"] is None and body["chain_break"] is None, query
    assert verify_calls == []


def test_a_page_of_a_broken_chain_says_nothing_about_it_unless_asked(
    audited: Running, verify_calls: list[AuditBreak | None]
) -> None:
    _, before = _remove_newest_entry(audited)
    body = _audit(audited, "?limit=1").json()
    assert [e["id"] for e in body["entries"]] == [before]
    assert (body["chain_intact"], body["chain_break"]) == (None, None)
    assert verify_calls == []


def test_verify_true_checks_an_intact_chain(
    audited: Running, verify_calls: list[AuditBreak | None]
) -> None:
    r = _audit(audited, "?verify=true&limit=1")
    assert r.status_code == 200, r.text
    assert r.json()["chain_intact"] is True and r.json()["chain_break"] is None
    assert verify_calls == [None]


def test_verify_true_reports_a_tampered_chain(
    audited: Running, verify_calls: list[AuditBreak | None]
) -> None:
    removed, before = _remove_newest_entry(audited)
    body = _audit(audited, "?verify=true").json()
    assert body["chain_intact"] is False
    broken = body["chain_break"]
    assert (broken["kind"], broken["entry_id"]) == ("head", before)
    assert body["entries"][0]["id"] == before != removed
    assert len(verify_calls) == 1 and verify_calls[0] is not None


@pytest.mark.parametrize(
    "value",
    ["maybe", "", "2", "truee", "null"],
    ids=["word", "empty", "two", "misspelt", "null"],
)
def test_an_unreadable_verify_is_a_400(
    audited: Running, verify_calls: list[AuditBreak | None], value: str
) -> None:
    r = _audit(audited, f"?verify={value}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request" and "verify" in body["error"]
    assert verify_calls == []
