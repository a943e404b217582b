"""What the store's promotion refuses, by code, and the approval requests a promotion
closes — on SQLite and PostgreSQL.

The current champion and a rolled-back version were both refused with the generic
``conflict``: a caller could not tell a retry of its own promotion (nothing to do) from a
real conflict, and the approval path said ``not_promotable`` for the same version. A
version promoted without its pending request kept it pending."""

from __future__ import annotations

import pytest

from tunewatch._errors import ConflictError
from tunewatch.store import Store


@pytest.fixture
def versions(model_store: Store) -> Store:
    """m: v1 champion, v2 and v3 shadows."""
    for i, stage in enumerate(("champion", "shadow", "shadow"), start=1):
        model_store.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
            stage=stage,
        )  # type: ignore[arg-type]
    return model_store


def test_promoting_the_champion_is_refused_as_already_champion_and_writes_nothing(
    versions: Store,
) -> None:
    audit, events = versions.audit_log(limit=100), versions.list_events(limit=100)
    for expected in (None, 1, 2):  # a retry naming the champion it replaced, too
        with pytest.raises(ConflictError, match="already the champion") as info:
            versions.promote("m", 1, actor="bob", reason="again", expected_champion=expected)
        assert info.value.code == "already_champion"
    with pytest.raises(ConflictError) as info:
        versions.request_approval("m", 1, requested_by="bob", reason="again", rules=["r"])
    assert info.value.code == "already_champion"
    assert versions.audit_log(limit=100) == audit and versions.list_events(limit=100) == events


def test_promoting_the_champion_seen_in_shadow_is_a_stage_change(versions: Store) -> None:
    """A caller that saw the version in shadow (the comparison's decision) is told it
    moved, as before: the already-champion answer is for a caller naming no stage."""
    with pytest.raises(ConflictError) as info:
        versions.promote("m", 1, actor="bob", reason="won", expected_stage="shadow")
    assert info.value.code == "stage_changed"


def test_a_rolled_back_version_is_not_promotable(versions: Store) -> None:
    versions.set_stage("m", 2, "rolled_back", actor="bob", reason="bad latency")
    with pytest.raises(ConflictError, match="rolled back") as info:
        versions.promote("m", 2, actor="bob", reason="retry")
    assert info.value.code == "not_promotable"
    with pytest.raises(ConflictError) as info:
        versions.request_approval("m", 2, requested_by="bob", reason="retry", rules=["r"])
    assert info.value.code == "not_promotable"
    assert versions.champion("m").version == 1  # type: ignore[union-attr]


def test_a_promotion_closes_the_promoted_version_s_pending_requests_in_its_transaction(
    versions: Store,
) -> None:
    stale = versions.request_approval("m", 2, requested_by="alice", reason="r", rules=["C"])
    other = versions.request_approval("m", 3, requested_by="alice", reason="r", rules=["C"])
    versions.promote("m", 2, actor="bob", reason="C is safe now", expected_champion=1)
    closed = versions.get_approval(stale.id)
    reason = "superseded: v2 was promoted without this request (C is safe now)"
    assert (closed.status, closed.decided_by, closed.decision_reason) == ("rejected", "bob", reason)
    assert closed.decided_at is not None
    assert versions.get_approval(other.id).status == "pending"  # another version's
    entries = versions.audit_log(limit=2)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("bob", "approval_rejected", "m/v2"),
        ("bob", "promote", "m/v2"),
    ]
    assert entries[0].details == {"approval": stale.id, "version": 2, "reason": reason}
    [event] = versions.list_events(model="m", type="approval_rejected")
    assert event.payload == entries[0].details
    assert versions.verify_audit() is None


def test_an_approved_promotion_closes_nothing_else(versions: Store) -> None:
    request = versions.request_approval("m", 2, requested_by="alice", reason="r", rules=["C"])
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None
    actions = [e.action for e in versions.audit_log(limit=3)]
    assert actions == ["promote", "approval_approved", "request_approval"]
