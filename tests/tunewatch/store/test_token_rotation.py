"""Rotating a token keeps its person: the new secret's name (``root#2``) is the same
person as the old one's to the rule that a requester may not decide their own approval,
on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tunewatch._errors import ConflictError, InvalidValueError, NotFoundError
from tunewatch.store import Store
from tunewatch.store._governance import person


@pytest.fixture
def governed(model_store: Store) -> Store:
    """Model ``m``: v1 champion, v2 shadow; tokens ``root`` (admin) and ``carol``
    (approver)."""
    for i, stage in enumerate(("champion", "shadow"), start=1):
        model_store.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
            stage=stage,  # type: ignore[arg-type]
        )
    model_store.add_token(name="root", role="admin", token_hash="1" * 64, actor="ops")
    model_store.add_token(name="carol", role="approver", token_hash="2" * 64, actor="ops")
    return model_store


def test_a_rotated_token_cannot_approve_its_old_name_s_request(governed: Store) -> None:
    """`root` asked, rotated their token (revoke + create was the only way, under a new
    name: `root-2`), and approved their own request as `root-2`: promoted, alone."""
    request = governed.request_approval(
        "m", 2, requested_by="root", reason="ready", rules=["regulated model"]
    )
    old, new = governed.rotate_token("root", token_hash="3" * 64, actor="root")
    assert (old.name, new.name, new.role) == ("root", "root#2", "admin")
    assert old.revoked_at is not None and new.revoked_at is None
    with pytest.raises(ConflictError) as info:
        governed.decide_approval(request.id, approver="root#2", approve=True, reason="self")
    assert info.value.code == "same_person"
    assert "'root'" in info.value.message and "rotation" in info.value.message
    assert governed.champion("m").version == 1  # type: ignore[union-attr]
    decided, promoted = governed.decide_approval(
        request.id, approver="carol", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None


def test_a_rotation_is_audited_as_a_revocation_and_a_creation_with_its_reason(
    governed: Store,
) -> None:
    before = governed.audit_log(limit=1)[0].id
    governed.rotate_token(
        "root", token_hash="3" * 64, actor="ops", details={"reason": "yearly rotation"}
    )
    entries = [e for e in reversed(governed.audit_log(limit=10)) if e.id > before]
    assert [(e.actor, e.action, e.target, e.details) for e in entries] == [
        ("ops", "revoke_token", "root", {"reason": "yearly rotation", "rotated_to": "root#2"}),
        (
            "ops",
            "create_token",
            "root#2",
            {"reason": "yearly rotation", "role": "admin", "rotated_from": "root"},
        ),
    ]
    assert governed.verify_audit() is None
    assert governed.token_by_hash("1" * 64) is None  # the old secret no longer works
    assert governed.token_by_hash("3" * 64).name == "root#2"  # type: ignore[union-attr]


def test_each_rotation_takes_the_next_number_and_stays_the_same_person(governed: Store) -> None:
    governed.rotate_token("root", token_hash="3" * 64, actor="ops")
    _, third = governed.rotate_token("root#2", token_hash="4" * 64, actor="ops")
    assert third.name == "root#3"
    assert {person(n) for n in ("root", "root#2", "root#3")} == {"root"}
    request = governed.request_approval(
        "m", 2, requested_by="root#2", reason="ready", rules=["regulated model"]
    )
    with pytest.raises(ConflictError) as info:
        governed.decide_approval(request.id, approver="root#3", approve=True, reason="self")
    assert info.value.code == "same_person"


def test_only_the_newest_name_of_a_person_is_rotated(governed: Store) -> None:
    governed.rotate_token("root", token_hash="3" * 64, actor="ops")
    with pytest.raises(ConflictError) as info:
        governed.rotate_token("root", token_hash="4" * 64, actor="ops")
    assert info.value.code == "token_rotated"
    assert "'root#2'" in info.value.message
    assert [t.name for t in governed.list_tokens()] == ["root", "carol", "root#2"]


def test_a_revoked_token_is_rotated_to_a_new_one_of_the_same_person(governed: Store) -> None:
    """A leaked token is revoked at once; its holder then gets a new one as the same
    person, not under a new name that counts as another."""
    governed.revoke_token("root", actor="ops", details={"reason": "leaked"})
    before = governed.audit_log(limit=1)[0].id
    old, new = governed.rotate_token("root", token_hash="3" * 64, actor="ops")
    assert new.name == "root#2" and new.revoked_at is None
    # revoked already: only the new token is audited
    assert [e.action for e in governed.audit_log(limit=5) if e.id > before] == ["create_token"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("root#2", id="a_rotation_s_name"),
        pytest.param("root#17", id="a_later_rotation_s_name"),
        pytest.param("root#1", id="number_one"),
        pytest.param("root\uff032", id="fullwidth_number_sign"),
        pytest.param("root#\u0663", id="arabic_indic_three"),
    ],
)
def test_a_name_that_reads_as_a_rotation_s_is_refused(governed: Store, name: str) -> None:
    """`root#2` made by hand would be `root` to the same-person rule without being their
    token."""
    with pytest.raises(InvalidValueError) as info:
        governed.add_token(name=name, role="admin", token_hash="5" * 64, actor="mallory")
    assert "`tunewatch tokens rotate`" in info.value.message
    assert name not in [t.name for t in governed.list_tokens()]


def test_a_name_with_a_number_sign_elsewhere_is_its_own_person(governed: Store) -> None:
    governed.add_token(name="team#blue", role="viewer", token_hash="5" * 64, actor="ops")
    assert person("team#blue") == "team#blue"
    _, new = governed.rotate_token("team#blue", token_hash="6" * 64, actor="ops")
    assert new.name == "team#blue#2" and person(new.name) == "team#blue"


def test_the_bootstrap_admin_is_rotated_by_its_variable_not_by_name(governed: Store) -> None:
    governed.add_token(
        name="bootstrap-admin", role="admin", token_hash="5" * 64, actor="system", bootstrap=True
    )
    with pytest.raises(InvalidValueError) as info:
        governed.rotate_token("bootstrap-admin", token_hash="6" * 64, actor="ops")
    assert "TUNEWATCH_ADMIN_TOKEN" in info.value.message
    assert governed.token_by_hash("5" * 64) is not None  # still active


def test_rotating_an_unknown_token_is_not_found(governed: Store) -> None:
    with pytest.raises(NotFoundError):
        governed.rotate_token("nobody", token_hash="6" * 64, actor="ops")
    assert governed.token_by_hash("6" * 64) is None


def test_a_rotation_whose_name_would_not_fit_changes_nothing(governed: Store) -> None:
    name = "x" * 99  # `x…x#2` would be 101 characters, one past the column
    governed.add_token(name=name, role="viewer", token_hash="5" * 64, actor="ops")
    with pytest.raises(InvalidValueError) as info:
        governed.rotate_token(name, token_hash="6" * 64, actor="ops")
    assert "at most 100 characters" in info.value.message
    assert governed.token_by_hash("5" * 64) is not None  # not revoked
