"""A rollback that restores a version closes that version's pending approval requests, as
a direct promotion of it does: superseded, by the rollback's actor, in the rollback's
transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tunewatch._errors import ConflictError
from tunewatch.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """Model ``m``: v2 the champion that replaced v1 (retired), and a pending request by
    alice to promote v1 again."""
    s = Store.open(store_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    for stage, sha in (("champion", "a" * 64), ("shadow", "b" * 64)):
        s.add_version(
            model="m",
            artefact_sha256=sha,
            hyperparameters={},
            size_bytes=10,
            actor="ci",
            stage=stage,  # type: ignore[arg-type]
        )
    s.promote("m", 2, actor="ops", reason="v2 won")
    s.request_approval("m", 1, requested_by="alice", reason="bring v1 back", rules=["regulated"])
    try:
        yield s
    finally:
        s.close()


def test_a_rollback_restoring_a_requested_version_closes_its_request_as_superseded(
    store: Store,
) -> None:
    """The rollback closed only the rolled-back version's requests: v1's stayed pending,
    and carol approving it later was refused as a champion change and stored, and
    audited, as carol's rejection."""
    [request] = store.list_approvals(model="m", status="pending")
    restored, rolled_back = store.rollback("m", actor="bob", reason="v2 misbehaves")
    assert (restored.version, rolled_back.version) == (1, 2)
    assert store.list_approvals(model="m", status="pending") == []
    closed = store.get_approval(request.id)
    assert (closed.status, closed.decided_by) == ("rejected", "bob")
    assert closed.decision_reason is not None
    assert closed.decision_reason.startswith("superseded: v1 was restored as champion by")
    assert "v2 misbehaves" in closed.decision_reason
    [entry] = store.audit_log(limit=10, action="approval_rejected")
    assert (entry.actor, entry.target) == ("bob", "m/v1")
    assert entry.details["approval"] == request.id
    # the rollback's own entry comes first, then the request it closed
    rollback = store.audit_log(limit=10, action="rollback")[0]
    assert rollback.id < entry.id
    with pytest.raises(ConflictError) as exc:
        store.decide_approval(request.id, approver="carol", approve=True, reason="ok")
    assert exc.value.code == "already_decided"
    assert store.verify_audit() is None
