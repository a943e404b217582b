"""Approvals and rollback — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.tunewatch.conftest import break_audit_appends
from tunewatch._errors import ConflictError, NotFoundError, StoreError
from tunewatch.store import MAX_REASON_LENGTH, Store
from tunewatch.store._schema import approvals


@pytest.fixture
def versions(model_store: Store) -> Store:
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


def test_requester_cannot_approve_their_own_promotion(versions: Store) -> None:
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason="better", rules=["regulated"]
    )
    assert request.status == "pending" and request.rules == ("regulated",)
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="alice", approve=True, reason="me")
    assert info.value.code == "same_person"
    assert "bootstrap admin" not in info.value.message  # alice is no bootstrap admin
    assert versions.champion("m").version == 1  # type: ignore[union-attr]


def test_approval_promotes_atomically_and_is_audited(versions: Store) -> None:
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason="better", rules=["outside_safe_range:C"]
    )
    again = versions.request_approval("m", 2, requested_by="alice", reason="again", rules=[])
    assert again.id == request.id  # one pending request per version
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=True, reason="checked"
    )
    assert decided.status == "approved" and decided.decided_by == "bob"
    assert promoted is not None and promoted[0].version == 2 and promoted[1].version == 1
    assert versions.champion("m").version == 2  # type: ignore[union-attr]
    actions = [e.action for e in versions.audit_log(limit=10)]
    assert actions[:3] == ["promote", "approval_approved", "request_approval"]
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="carol", approve=False, reason="late")
    assert info.value.code == "already_decided"
    assert versions.verify_audit() is None


def test_rejection_leaves_the_champion(versions: Store) -> None:
    request = versions.request_approval("m", 3, requested_by="alice", reason="x", rules=[])
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=False, reason="too risky"
    )
    assert decided.status == "rejected" and promoted is None
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert [a.id for a in versions.list_approvals(model="m", status="rejected")] == [request.id]


def test_rollback_restores_the_previous_champion(versions: Store) -> None:
    versions.promote("m", 2, actor="ops", reason="won")
    restored, rolled = versions.rollback("m", actor="ops", reason="degraded")
    assert (restored.version, restored.stage) == (1, "champion")
    assert (rolled.version, rolled.stage) == (2, "rolled_back")
    assert versions.list_events(model="m", type="rolled_back", limit=1)[0].payload == {
        "version": 1,
        "rolled_back": 2,
        "reason": "degraded",
    }
    with pytest.raises(ConflictError) as info:
        versions.rollback("m", actor="ops", reason="again")
    assert info.value.code == "no_previous_champion"


def test_rollback_without_a_previous_champion_is_a_conflict(versions: Store) -> None:
    with pytest.raises(ConflictError) as info:
        versions.rollback("m", actor="ops", reason="x")
    assert info.value.code == "no_previous_champion"


def test_an_approval_requested_with_no_champion_closes_once_one_exists(
    model_store: Store,
) -> None:
    """An approval records the champion it was requested against; one requested when
    there was none (or before that was recorded) promoted over whatever champion had
    arrived since, unseen by its evidence."""
    for i in (1, 2):
        model_store.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
        )
    request = model_store.request_approval("m", 2, requested_by="alice", reason="x", rules=[])
    assert request.champion_version is None
    model_store.promote("m", 1, actor="ops", reason="first champion")
    decided, promoted = model_store.decide_approval(
        request.id, approver="bob", approve=True, reason="ok"
    )
    assert decided.status == "rejected" and promoted is None
    assert "champion changed" in (decided.decision_reason or "")
    assert model_store.champion("m").version == 1  # type: ignore[union-attr]


def test_a_request_against_a_new_champion_replaces_the_stale_pending_one(versions: Store) -> None:
    stale = versions.request_approval(
        "m", 3, requested_by="tunewatch", reason="v3 beat v1", rules=["regulated"]
    )
    assert stale.champion_version == 1
    versions.promote("m", 2, actor="ops", reason="meanwhile")
    fresh = versions.request_approval(
        "m",
        3,
        requested_by="tunewatch",
        reason="v3 beat v2",
        rules=["regulated"],
        expected_champion=2,
    )
    assert fresh.id != stale.id
    assert (fresh.status, fresh.champion_version, fresh.reason) == ("pending", 2, "v3 beat v2")
    closed = versions.get_approval(stale.id)
    assert closed.status == "rejected" and closed.decided_by == "tunewatch"
    assert closed.decision_reason == (
        f"superseded by request {fresh.id}: the champion changed from v1 to v2 since the request"
    )
    entry = versions.audit_log(limit=2)[1]
    assert (entry.action, entry.target) == ("approval_rejected", "m/v3")
    decided, promoted = versions.decide_approval(
        fresh.id, approver="bob", approve=True, reason="looks good"
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.champion("m").version == 3  # type: ignore[union-attr]
    assert versions.verify_audit() is None


def test_a_stale_approval_closes_with_the_longest_reason_an_approver_may_give(
    versions: Store,
) -> None:
    """Closing a stale approval prepends why to the approver's reason (up to 2000
    characters through the API): 2069 characters did not fit `decision_reason`
    (VARCHAR(2000)), PostgreSQL refused them and the approval stayed pending."""
    request = versions.request_approval("m", 3, requested_by="alice", reason="x", rules=[])
    versions.promote("m", 2, actor="ops", reason="meanwhile")
    words = "checked " * 249 + "all fine"  # 2000 characters
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=True, reason=words
    )
    assert decided.status == "rejected" and promoted is None
    assert versions.get_approval(request.id) == decided
    composed = f"not promoted: the champion changed from v1 to v2 since the request ({words})"
    stored = decided.decision_reason or ""
    assert len(stored) == MAX_REASON_LENGTH and stored.endswith("…")
    assert stored == composed[: MAX_REASON_LENGTH - 1] + "…"
    entry = versions.audit_log(limit=1)[0]  # the whole text is kept in the audit log
    assert (entry.action, entry.details["reason"]) == ("approval_rejected", composed)
    assert versions.champion("m").version == 2  # type: ignore[union-attr]
    assert versions.verify_audit() is None


def test_the_reason_limit_is_the_length_of_the_approval_columns() -> None:
    columns = (approvals.c.reason, approvals.c.decision_reason)
    assert [getattr(c.type, "length", None) for c in columns] == [MAX_REASON_LENGTH] * 2


def test_regulating_a_model_sets_its_flag_once_with_an_audit_entry(model_store: Store) -> None:
    """A model stored unregulated (before the config regulated it) could not be
    regulated at all: registrations kept the stored flag and refused to change it."""
    assert model_store.regulate_model("m", actor="tunewatch", reason="the config regulates it")
    assert model_store.get_model("m").regulated is True
    [entry] = model_store.audit_log(action="regulate_model")
    assert (entry.actor, entry.target) == ("tunewatch", "m")
    assert entry.details == {"regulated": True, "reason": "the config regulates it"}
    # already regulated: nothing changes and nothing more is audited
    assert not model_store.regulate_model("m", actor="bob", reason="again")
    assert len(model_store.audit_log(action="regulate_model")) == 1
    assert model_store.verify_audit() is None
    with pytest.raises(NotFoundError):
        model_store.regulate_model("nosuch", actor="tunewatch", reason="x")


def test_a_model_whose_regulation_cannot_be_audited_stays_as_it_was(model_store: Store) -> None:
    break_audit_appends(model_store)
    with pytest.raises(StoreError):
        model_store.regulate_model("m", actor="tunewatch", reason="the config regulates it")
    assert model_store.get_model("m").regulated is False


def test_a_regulated_model_is_promoted_only_by_an_approval(versions: Store) -> None:
    """The flag is read under the model's lock: a caller that found the model
    unregulated before it was regulated (and so asked no approver) is refused."""
    versions.regulate_model("m", actor="bob", reason="regulated meanwhile")
    with pytest.raises(ConflictError) as info:
        versions.promote("m", 2, actor="alice", reason="it won")
    assert info.value.code == "approval_required" and "'m' is regulated" in info.value.message
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert versions.audit_log(limit=10, action="promote") == []
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason="it won", rules=["regulated model"]
    )
    decided, promoted = versions.decide_approval(
        request.id, approver="carol", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.champion("m").version == 2  # type: ignore[union-attr]


def test_a_second_person_asking_for_a_pending_promotion_is_audited_and_cannot_decide_it(
    versions: Store,
) -> None:
    """Bob's request was merged into Alice's pending one with no trace: his reason was
    dropped, nothing was audited, and he could then approve it, since Alice asked."""
    alice = versions.request_approval(
        "m", 2, requested_by="alice", reason="alice's evidence", rules=["regulated model"]
    )
    bob = versions.request_approval(
        "m", 2, requested_by="bob", reason="bob's evidence", rules=["regulated model"]
    )
    assert bob.id == alice.id and bob.requested_by == "alice"
    assert bob.co_requesters == ("bob",) and alice.co_requesters == ()
    [entry] = versions.audit_log(limit=10, actor="bob")
    assert (entry.action, entry.target) == ("request_approval", "m/v2")
    assert entry.details == {
        "approval": alice.id,
        "version": 2,
        "rules": ["regulated model"],
        "reason": "bob's evidence",
    }
    [event, _] = versions.list_events(model="m", type="approval_requested")
    assert event.payload == entry.details
    # asking again adds nobody and audits nothing more, as for the requester
    versions.request_approval("m", 2, requested_by="bob", reason="again", rules=[])
    versions.request_approval("m", 2, requested_by="alice", reason="again", rules=[])
    assert versions.get_approval(alice.id).co_requesters == ("bob",)
    assert len(versions.audit_log(limit=10, action="request_approval")) == 2
    for person in ("alice", "bob"):
        with pytest.raises(ConflictError) as info:
            versions.decide_approval(alice.id, approver=person, approve=True, reason="me")
        assert info.value.code == "same_person" and repr(person) in info.value.message
    [listed] = versions.list_approvals(model="m")
    assert listed.co_requesters == ("bob",)
    decided, promoted = versions.decide_approval(
        alice.id, approver="carol", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.verify_audit() is None


@pytest.mark.parametrize(
    ("requester", "approver"),
    [("bootstrap-admin", "bootstrap-admin-2"), ("bootstrap-admin-2", "bootstrap-admin-10")],
    ids=["first_and_rotated", "two_rotations"],
)
def test_the_bootstrap_admin_under_a_rotated_name_is_the_same_person(
    versions: Store, requester: str, approver: str
) -> None:
    """Rotating TUNEWATCH_ADMIN_TOKEN names the new token bootstrap-admin-2, -3 …; the
    check compared names, so its holder approved their own request after a rotation."""
    request = versions.request_approval(
        "m", 2, requested_by=requester, reason="x", rules=["regulated model"]
    )
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver=approver, approve=True, reason="me")
    assert info.value.code == "same_person"
    assert "the bootstrap admin under any of its token's names" in info.value.message
    decided, _ = versions.decide_approval(
        request.id, approver="bootstrap-admin-ci", approve=False, reason="another token"
    )
    assert decided.status == "rejected"


@pytest.mark.parametrize(
    ("requester", "approver"),
    [("test-operator", "Test-Operator"), ("josé", "jose\u0301"), ("ops", "ｏｐｓ")],
    ids=["case", "decomposed", "fullwidth"],
)
def test_names_reading_the_same_are_one_person(
    versions: Store, requester: str, approver: str
) -> None:
    """A token's name is refused when it reads as another's once case and Unicode forms
    are folded, but the CLI's ``--actor Test-Operator`` approved ``test-operator``'s own
    request: the check compared the names as spelt."""
    request = versions.request_approval(
        "m", 2, requested_by=requester, reason="x", rules=["regulated model"]
    )
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver=approver, approve=True, reason="me")
    assert info.value.code == "same_person"
    assert "read the same once case and Unicode forms are folded" in info.value.message


def _reopen(store: Store, approval_id: int) -> None:
    """Leave approval ``approval_id`` pending, as versions before closing one on a stage
    change did."""
    with store.engine.begin() as conn:
        conn.execute(
            approvals.update()
            .where(approvals.c.id == approval_id)
            .values(status="pending", decided_by=None, decision_reason=None, decided_at=None)
        )


@pytest.mark.parametrize(
    ("stage", "word"), [("retired", "retired"), ("rolled_back", "rolled back")]
)
def test_a_version_leaving_shadow_closes_its_pending_approval(
    versions: Store, stage: str, word: str
) -> None:
    """A pending approval survived its version's retirement: approving it then made the
    retired version the champion."""
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason="v2 won", rules=["regulated model"]
    )
    versions.set_stage("m", 2, stage, actor="ops", reason="v2 leaks PII")  # type: ignore[arg-type]
    closed = versions.get_approval(request.id)
    assert (closed.status, closed.decided_by) == ("rejected", "ops")
    assert closed.decision_reason == f"not promoted: v2 was {word} since the request (v2 leaks PII)"
    closing, moving = versions.audit_log(limit=2)
    assert (moving.action, closing.actor, closing.action, closing.target) == (
        "set_stage",
        "ops",
        "approval_rejected",
        "m/v2",
    )
    assert closing.details == {
        "approval": request.id,
        "version": 2,
        "reason": closed.decision_reason,
    }
    [event] = versions.list_events(model="m", type="approval_rejected")
    assert event.payload == closing.details
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="bob", approve=True, reason="fine")
    assert info.value.code == "already_decided"
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert versions.get_version("m", 2).stage == stage
    assert versions.verify_audit() is None


def test_retiring_a_retired_version_closes_the_request_to_bring_it_back(
    versions: Store,
) -> None:
    """A retired version may be promoted again; retiring it once more, as an operator
    pulling it does, closes the request made meanwhile."""
    versions.promote("m", 2, actor="ops", reason="v2 won")  # v1 retired
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    versions.set_stage("m", 1, "retired", actor="ops", reason="v1 leaks PII")
    closed = versions.get_approval(request.id)
    assert closed.status == "rejected"
    assert closed.decision_reason == "not promoted: v1 was retired since the request (v1 leaks PII)"


def test_moving_a_version_into_shadow_leaves_its_approval_pending(versions: Store) -> None:
    versions.promote("m", 2, actor="ops", reason="v2 won")  # v1 retired
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    versions.set_stage("m", 1, "shadow", actor="watch", reason="kept for a rollback watch")
    assert versions.get_approval(request.id).status == "pending"


def test_a_retired_version_requested_while_retired_is_promoted_on_approval(
    versions: Store,
) -> None:
    versions.promote("m", 2, actor="ops", reason="v2 won")  # v1 retired
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=True, reason="v2 degraded"
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.champion("m").version == 1  # type: ignore[union-attr]


def test_a_rollback_closes_the_rolled_back_version_s_pending_approval(versions: Store) -> None:
    request = versions.request_approval("m", 2, requested_by="alice", reason="won", rules=[])
    versions.promote("m", 2, actor="ops", reason="won, unregulated")  # closes it, superseded
    _reopen(versions, request.id)  # as versions before closing one on a promotion left it
    versions.rollback("m", actor="ops", reason="degraded")  # v1 champion again
    closed = versions.get_approval(request.id)
    assert (closed.status, closed.decided_by) == ("rejected", "ops")
    assert closed.decision_reason == "not promoted: v2 was rolled back since the request (degraded)"
    assert versions.verify_audit() is None


@pytest.mark.parametrize("stage", ["retired", "rolled_back"])
def test_an_approval_left_pending_after_its_version_left_shadow_is_refused(
    versions: Store, stage: str
) -> None:
    """An approval left open by an earlier version (which did not close one when its
    version moved) is refused, not promoted; it can still be rejected."""
    request = versions.request_approval("m", 2, requested_by="alice", reason="won", rules=[])
    versions.set_stage("m", 2, stage, actor="ops", reason="pulled")  # type: ignore[arg-type]
    _reopen(versions, request.id)
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="bob", approve=True, reason="fine")
    assert info.value.code == "stage_changed"
    word = stage.replace("_", " ")
    assert f"model 'm' version 2 was {word} after approval {request.id} was requested" in (
        info.value.message
    )
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert versions.get_approval(request.id).status == "pending"
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=False, reason="pulled"
    )
    assert decided.status == "rejected" and promoted is None


def test_retiring_with_the_longest_reason_closes_the_approval_with_it_cut(versions: Store) -> None:
    """The closing reason wraps the retirement's (up to 2000 characters through the API):
    uncut, PostgreSQL's VARCHAR(2000) refused it and the retirement failed."""
    request = versions.request_approval("m", 2, requested_by="alice", reason="won", rules=[])
    words = "pulled " * 285 + "x" * 5  # 2000 characters
    versions.set_stage("m", 2, "retired", actor="ops", reason=words)
    stored = versions.get_approval(request.id).decision_reason or ""
    assert len(stored) == MAX_REASON_LENGTH and stored.endswith("…")
    entry = versions.audit_log(limit=1)[0]
    assert entry.details["reason"] == f"not promoted: v2 was retired since the request ({words})"
    assert versions.get_version("m", 2).stage == "retired"


def _watch_keeps_v1(versions: Store) -> None:
    """v2 promoted over v1 (retired), and v1 kept in shadow for v2's rollback watch."""
    versions.promote("m", 2, actor="ops", reason="v2 won")
    versions.set_stage("m", 1, "shadow", actor="tunewatch", reason="kept for rollback watch 1")


def test_a_rollback_watch_returning_its_kept_version_leaves_the_request_to_promote_it(
    versions: Store,
) -> None:
    """The watch's end retires the version it kept in shadow, to the stage it had before:
    that closed an operator's request, made during the watch, to bring it back, and
    approving it answered already_decided."""
    _watch_keeps_v1(versions)
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    versions.set_stage(
        "m", 1, "retired", actor="tunewatch", reason="watch 1 ended", close_approvals=False
    )
    assert versions.get_approval(request.id).status == "pending"
    entry = versions.audit_log(limit=1)[0]
    assert (entry.action, entry.details["stage"], entry.details["approvals_kept"]) == (
        "set_stage",
        "retired",
        True,
    )
    decided, promoted = versions.decide_approval(
        request.id, approver="bob", approve=True, reason="v2 degraded on segment X"
    )
    assert decided.status == "approved" and promoted is not None
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert versions.verify_audit() is None


def test_an_operator_retiring_a_version_after_the_watch_returned_it_closes_its_request(
    versions: Store,
) -> None:
    """The watch's return is passed over, an operator's move after it is not."""
    _watch_keeps_v1(versions)
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    versions.set_stage(
        "m", 1, "retired", actor="tunewatch", reason="watch 1 ended", close_approvals=False
    )
    versions.set_stage("m", 1, "retired", actor="ops", reason="v1 leaks PII")
    closed = versions.get_approval(request.id)
    assert (closed.status, closed.decided_by) == ("rejected", "ops")
    _reopen(versions, request.id)  # as an earlier tunewatch left it
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="bob", approve=True, reason="fine")
    assert info.value.code == "stage_changed"


def test_a_watch_s_return_does_not_hide_an_operator_s_earlier_move(versions: Store) -> None:
    """An approval left open across an operator's retirement stays refused when a watch's
    return follows it."""
    _watch_keeps_v1(versions)
    request = versions.request_approval("m", 1, requested_by="alice", reason="back", rules=[])
    versions.set_stage("m", 1, "retired", actor="ops", reason="pulled")
    versions.set_stage("m", 1, "shadow", actor="tunewatch", reason="kept for watch 2")
    versions.set_stage(
        "m", 1, "retired", actor="tunewatch", reason="watch 2 ended", close_approvals=False
    )
    _reopen(versions, request.id)
    with pytest.raises(ConflictError) as info:
        versions.decide_approval(request.id, approver="bob", approve=True, reason="fine")
    assert info.value.code == "stage_changed"


# -- a promotion decided on a version's stage ------------------------------------------------


def _pull_v2(versions: Store) -> None:
    """An operator retires v2 between a caller's read of it (in shadow) and its write."""
    versions.set_stage("m", 2, "retired", actor="alice", reason="bad data: never serve v2")


def test_a_promotion_expecting_a_shadow_refuses_a_version_retired_meanwhile(
    versions: Store,
) -> None:
    """The comparison loop read v2 in shadow, the operator retired it, and the promotion
    that followed made the retired version the champion: the store checked the champion
    it was decided against, not the stage."""
    _pull_v2(versions)
    with pytest.raises(ConflictError) as info:
        versions.promote(
            "m", 2, actor="tunewatch", reason="won", expected_champion=1, expected_stage="shadow"
        )
    assert info.value.code == "stage_changed"
    assert "model 'm' version 2 is retired, not shadow as expected" in info.value.message
    assert versions.champion("m").version == 1  # type: ignore[union-attr]
    assert versions.get_version("m", 2).stage == "retired"
    assert "promote" not in [e.action for e in versions.audit_log(limit=10)]
    assert versions.list_events(model="m", type="promoted") == []


def test_a_promotion_expecting_the_stage_the_version_has_goes_ahead(versions: Store) -> None:
    new, old = versions.promote("m", 2, actor="ops", reason="won", expected_stage="shadow")
    assert (new.version, new.stage) == (2, "champion")
    assert old is not None and (old.version, old.stage) == (1, "retired")


def test_an_approval_request_expecting_a_shadow_refuses_a_version_retired_meanwhile(
    versions: Store,
) -> None:
    """The request opened for the retired version, and approving it promoted the version
    the operator had pulled."""
    _pull_v2(versions)
    with pytest.raises(ConflictError) as info:
        versions.request_approval(
            "m",
            2,
            requested_by="tunewatch",
            reason="won",
            rules=["regulated model"],
            expected_champion=1,
            expected_stage="shadow",
        )
    assert info.value.code == "stage_changed"
    assert "model 'm' version 2 is retired, not shadow as expected" in info.value.message
    assert versions.list_approvals(model="m") == []
    assert "request_approval" not in [e.action for e in versions.audit_log(limit=10)]
    assert versions.list_events(model="m", type="approval_requested") == []


def test_an_approval_request_with_a_reason_past_the_column_keeps_it_whole_in_the_audit_log(
    versions: Store,
) -> None:
    """`approvals.reason` is VARCHAR(2000); a longer reason (the CLI's `--reason`
    was not bounded) failed the request on PostgreSQL, and SQLite stored it whole."""
    words = "because " * 300  # 2400 characters
    request = versions.request_approval(
        "m", 2, requested_by="alice", reason=words, rules=["regulated model"]
    )
    assert len(request.reason) == MAX_REASON_LENGTH and request.reason.endswith("…")
    assert request.reason == words[: MAX_REASON_LENGTH - 1] + "…"
    entry = versions.audit_log(limit=1)[0]
    assert (entry.action, entry.details["reason"]) == ("request_approval", words)
    [event] = versions.list_events(model="m", type="approval_requested")
    assert event.payload["reason"] == words
    assert versions.verify_audit() is None
