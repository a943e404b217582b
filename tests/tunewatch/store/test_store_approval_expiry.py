"""Approval requests expire (``approvals.expire_after_days``): approving one older than the
limit closes it unpromoted, and the leader's sweep closes every such pending request — on
SQLite and PostgreSQL. A request stayed approvable for ever: approved four months on, it
promoted a version on evidence no one had looked at since."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tunewatch.store import ApprovalRow, Store
from tunewatch.store._schema import approvals


@pytest.fixture
def versions(model_store: Store) -> Store:
    """Model ``m``: v1 champion, v2 to v4 in shadow."""
    for i, stage in enumerate(("champion", "shadow", "shadow", "shadow"), start=1):
        model_store.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
            stage=stage,
        )  # type: ignore[arg-type]
    return model_store


def _request(store: Store, version: int) -> ApprovalRow:
    return store.request_approval(
        "m", version, requested_by="alice", reason="it won", rules=["regulated"]
    )


def test_approving_an_expired_request_closes_it_unpromoted_with_the_reason(
    versions: Store,
) -> None:
    request = _request(versions, 2)
    later = request.created_at + timedelta(days=120)
    decided, promoted = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="looks fine",
        expire_after_days=30,
        now=later,
    )
    assert promoted is None
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert decided.status == "rejected" and decided.decided_by == "bob"
    assert decided.decision_reason == (
        "not promoted: requested 120 days ago; approvals.expire_after_days is 30 (looks fine)"
    )
    [entry] = versions.audit_log(1)
    assert (entry.actor, entry.action, entry.target) == ("bob", "approval_rejected", "m/v2")
    assert entry.details["reason"] == decided.decision_reason
    [event] = versions.list_events(model="m", type="approval_rejected")
    assert event.payload == {
        "approval": request.id,
        "version": 2,
        "reason": entry.details["reason"],
    }
    assert versions.verify_audit() is None


def test_approving_just_inside_the_limit_still_promotes(versions: Store) -> None:
    request = _request(versions, 2)
    decided, promoted = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="checked",
        expire_after_days=30,
        now=request.created_at + timedelta(days=30) - timedelta(seconds=1),
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.champion("m").version == 2  # type: ignore[union-attr]


def test_rejecting_an_expired_request_is_a_plain_rejection(versions: Store) -> None:
    request = _request(versions, 2)
    decided, _ = versions.decide_approval(
        request.id,
        approver="bob",
        approve=False,
        reason="too risky",
        expire_after_days=30,
        now=request.created_at + timedelta(days=90),
    )
    assert (decided.status, decided.decision_reason) == ("rejected", "too risky")


def test_no_limit_never_expires(versions: Store) -> None:
    request = _request(versions, 2)
    decided, promoted = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="checked",
        expire_after_days=None,
        now=request.created_at + timedelta(days=3650),
    )
    assert decided.status == "approved" and promoted is not None


def _backdate(store: Store, approval_id: int, days: float) -> None:
    """Make request ``approval_id`` as if it had been made ``days`` earlier."""
    with store.engine.begin() as conn:
        created = conn.execute(
            select(approvals.c.created_at).where(approvals.c.id == approval_id)
        ).scalar_one()
        conn.execute(
            approvals.update()
            .where(approvals.c.id == approval_id)
            .values(created_at=created - timedelta(days=days))
        )


def test_the_sweep_closes_only_expired_pending_requests(versions: Store) -> None:
    old, decided, fresh = (_request(versions, v) for v in (2, 3, 4))
    versions.decide_approval(decided.id, approver="bob", approve=False, reason="no")
    for approval_id in (old.id, decided.id):
        _backdate(versions, approval_id, 40)
    now = fresh.created_at + timedelta(days=10)
    swept = versions.close_expired_approvals(expire_after_days=30, actor="tunewatch", now=now)
    assert [a.id for a in swept] == [old.id]
    [closed] = swept
    assert (closed.status, closed.decided_by) == ("rejected", "tunewatch")
    assert closed.decision_reason == (
        "not promoted: requested 50 days ago; approvals.expire_after_days is 30 (it won)"
    )
    assert versions.get_approval(decided.id).decision_reason == "no"  # decided: left
    assert versions.get_approval(fresh.id).status == "pending"  # 10 days old: left
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    [entry] = versions.audit_log(1)
    assert (entry.actor, entry.action, entry.target) == ("tunewatch", "approval_rejected", "m/v2")
    events = versions.list_events(model="m", type="approval_rejected")
    assert [e.payload["approval"] for e in events] == [old.id, decided.id]
    assert versions.verify_audit() is None
    # nothing left to close: a second sweep writes nothing
    assert versions.close_expired_approvals(expire_after_days=30, actor="tunewatch", now=now) == []
    assert versions.audit_log(1) == [entry]


def test_requesting_again_after_expiry_opens_a_new_request(versions: Store) -> None:
    """Asking again for a promotion whose pending request expired opens a new request on
    today's evidence, and closes the expired one (stored as rejected, by who asked again,
    the reason saying it expired): the expired one came back, still pending, its reason
    the old one, and only the sweep or an approver's refused approval ever closed it."""
    old = _request(versions, 2)
    later = old.created_at + timedelta(days=10)
    new = versions.request_approval(
        "m",
        2,
        requested_by="carol",
        reason="still wins",
        rules=["regulated"],
        expire_after_days=7,
        now=later,
    )
    assert new.id != old.id and new.status == "pending" and new.reason == "still wins"
    closed = versions.get_approval(old.id)
    assert (closed.status, closed.decided_by) == ("rejected", "carol")
    assert closed.decision_reason == (
        f"superseded by request {new.id}: requested 10 days ago; approvals.expire_after_days is 7"
    )


def test_requesting_again_inside_the_limit_returns_the_pending_request(versions: Store) -> None:
    old = _request(versions, 2)
    again = versions.request_approval(
        "m",
        2,
        requested_by="carol",
        reason="me too",
        rules=["regulated"],
        expire_after_days=7,
        now=old.created_at + timedelta(days=6),
    )
    assert again.id == old.id and again.co_requesters == ("carol",)


def _stamped(store: Store, version: int, days: float) -> ApprovalRow:
    """A request made under a limit of ``days``."""
    return store.request_approval(
        "m", version, requested_by="alice", reason="it won", rules=["r"], expire_after_days=days
    )


@pytest.mark.parametrize("decider", [None, 30.0], ids=["never", "thirty-days"])
def test_a_request_keeps_the_limit_it_was_made_under(
    versions: Store, decider: float | None
) -> None:
    """The deadline is stamped on the request: a process deciding under another config
    (the CLI with the store's URL only, a replica on an older config) still finds a
    request made under a 7-day limit expired after 10 days. It approved it."""
    request = _stamped(versions, 2, 7)
    assert request.expires_at == request.created_at + timedelta(days=7)
    decided, promoted = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="ok",
        expire_after_days=decider,
        now=request.created_at + timedelta(days=10),
    )
    assert promoted is None and decided.status == "rejected"
    assert decided.decision_reason == (
        "not promoted: requested 10 days ago; past the 7-day limit it was made under "
        "(approvals.expire_after_days then) (ok)"
    )


def test_the_stricter_of_the_stamped_and_the_deciders_limit_applies(versions: Store) -> None:
    request = _stamped(versions, 2, 30)
    decided, promoted = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="ok",
        expire_after_days=7,
        now=request.created_at + timedelta(days=10),
    )
    assert promoted is None and decided.decision_reason == (
        "not promoted: requested 10 days ago; approvals.expire_after_days is 7 (ok)"
    )


def test_the_sweep_closes_a_request_past_its_stamped_deadline(versions: Store) -> None:
    stamped = _stamped(versions, 2, 7)
    unstamped = _request(versions, 3)
    closed = versions.close_expired_approvals(
        expire_after_days=30, actor="tunewatch", now=stamped.created_at + timedelta(days=10)
    )
    assert [a.id for a in closed] == [stamped.id]
    assert versions.get_approval(unstamped.id).status == "pending"


def test_the_reason_names_the_limit_a_request_was_made_under_when_that_one_applies(
    versions: Store,
) -> None:
    """Decided under a longer limit than the one it was made under, a request's closure
    names the limit that closed it: it said "approvals.expire_after_days is 30" to a
    process configured for 60."""
    request = _stamped(versions, 2, 30)
    decided, _ = versions.decide_approval(
        request.id,
        approver="bob",
        approve=True,
        reason="ok",
        expire_after_days=60,
        now=request.created_at + timedelta(days=40),
    )
    assert decided.decision_reason == (
        "not promoted: requested 40 days ago; past the 30-day limit it was made under "
        "(approvals.expire_after_days then) (ok)"
    )
