"""``GET /v1/approvals`` says when each pending request expires (``expires_at``,
``approvals.expire_after_days``), so an approver sees the deadline; and approving one past
it closes it unpromoted (409 ``approval_expired``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.store import Store
from tunewatch.store._schema import approvals


def _serving(tmp_path: Path, trained: list[ExampleModel], days: float | None) -> Running:
    extra = {"scheduler": {"enabled": False}, "approvals": {"expire_after_days": days}}
    daemon, tokens = make_daemon(tmp_path, trained, extra=extra)
    return Running(daemon=daemon, server=BackgroundServer(daemon.app), tokens=tokens)


@pytest.fixture
def weekly(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """Requests expire after 7 days; v2 (shadow) has a rejected request and a pending
    one."""
    running = _serving(tmp_path, trained, 7)
    store = running.daemon.store
    rejected = store.request_approval(MODEL, 2, requested_by="alice", reason="x", rules=["r"])
    store.decide_approval(rejected.id, approver="bob", approve=False, reason="no")
    store.request_approval(MODEL, 2, requested_by="alice", reason="it won", rules=["r"])
    with running.server:
        yield running
    running.daemon.close()


def _listed(running: Running) -> list[dict[str, object]]:
    """The approval requests, newest first."""
    r = httpx.get(f"{running.url}/v1/approvals", headers=running.auth("viewer"), timeout=30)
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["approvals"]
    return found


def test_a_pending_request_is_listed_with_when_it_expires(weekly: Running) -> None:
    pending, rejected = _listed(weekly)
    created = datetime.fromisoformat(str(pending["created_at"]))
    assert pending["status"] == "pending"
    assert pending["expires_at"] == (created + timedelta(days=7)).isoformat()
    assert rejected["status"] == "rejected" and rejected["expires_at"] is None


def test_no_request_expires_without_a_limit(trained: list[ExampleModel], tmp_path: Path) -> None:
    running = _serving(tmp_path, trained, None)
    running.daemon.store.request_approval(
        MODEL, 2, requested_by="alice", reason="it won", rules=["r"]
    )
    try:
        with running.server:
            [pending] = _listed(running)
    finally:
        running.daemon.close()
    assert pending["status"] == "pending" and pending["expires_at"] is None


def _backdate(store: Store, days: float) -> None:
    """Make every request as if made ``days`` earlier."""
    with store.engine.begin() as conn:
        for row in conn.execute(approvals.select()).all():
            conn.execute(
                approvals.update()
                .where(approvals.c.id == row.id)
                .values(created_at=row.created_at - timedelta(days=days))
            )


def test_approving_an_expired_request_is_refused_and_closes_it(weekly: Running) -> None:
    store = weekly.daemon.store
    [pending] = store.list_approvals(status="pending")
    _backdate(store, 10)
    r = httpx.post(
        f"{weekly.url}/v1/approvals/{pending.id}/approve",
        json={"reason": "looks fine"},
        headers=weekly.auth("approver"),
        timeout=30,
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "approval_expired"
    assert r.json()["error"] == (
        "not promoted: requested 10 days ago; approvals.expire_after_days is 7 (looks fine)"
    )
    closed = store.get_approval(pending.id)
    assert (closed.status, closed.decided_by) == ("rejected", "test-approver")
    assert store.champion(MODEL).version == 1  # type: ignore[union-attr]
    denied = [e for e in store.audit_log(limit=10) if e.action == "denied_approve"]
    assert [e.details.get("code") for e in denied] == ["approval_expired"]


def test_an_expired_request_for_an_unreadable_version_is_closed_not_left_pending(
    weekly: Running,
) -> None:
    """An expired request is closed without reading its version's artefact: damaged, it
    was refused 409 ``artefact_unavailable`` and stayed pending for the sweep."""
    store = weekly.daemon.store
    [pending] = store.list_approvals(status="pending")
    path = weekly.daemon.artefacts.path(store.get_version(MODEL, 2).artefact_sha256)
    path.write_bytes(path.read_bytes()[:200])
    _backdate(store, 10)
    r = httpx.post(
        f"{weekly.url}/v1/approvals/{pending.id}/approve",
        json={"reason": "looks fine"},
        headers=weekly.auth("approver"),
        timeout=30,
    )
    assert (r.status_code, r.json()["code"]) == (409, "approval_expired"), r.text
    assert store.get_approval(pending.id).status == "rejected"


def test_asking_again_for_an_expired_request_opens_a_new_one(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A promotion waiting for an approver asked for again after its request expired gets a
    new request (the expired one closed as superseded), not the expired one back."""
    extra = {
        "scheduler": {"enabled": False},
        "approvals": {"expire_after_days": 7},
        # v2 (gradient boosting) is outside the safe ranges: its promotion waits
        "models": [
            {
                "name": MODEL,
                "task": "binary",
                "safe_ranges": {"estimator": {"choices": ["logistic"]}},
            }
        ],
    }
    daemon, tokens = make_daemon(tmp_path, trained, extra=extra)
    running = Running(daemon=daemon, server=BackgroundServer(daemon.app), tokens=tokens)

    def promote() -> int:
        r = httpx.post(
            f"{running.url}/v1/models/{MODEL}/versions/2/promote",
            json={"reason": "it won"},
            headers=running.auth("operator"),
            timeout=30,
        )
        assert r.status_code == 202, r.text
        approval_id: int = r.json()["approval"]["id"]
        return approval_id

    try:
        with running.server:
            first = promote()
            _backdate(daemon.store, 10)
            second = promote()
            closed = daemon.store.get_approval(first)
    finally:
        daemon.close()
    assert second != first
    assert closed.status == "rejected"
    assert closed.decision_reason == (
        f"superseded by request {second}: requested 10 days ago; approvals.expire_after_days is 7"
    )
