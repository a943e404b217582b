"""Version tags (``version_tags``) — on SQLite and PostgreSQL: set, replaced, deleted and
listed, each change audited in its own transaction, refused for a missing version."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from tests.tunewatch.conftest import break_audit_appends
from tunewatch._errors import NotFoundError, StoreError
from tunewatch.store import Store, VersionTag
from tunewatch.store._schema import version_tags
from tunewatch.store._types import utcnow


@pytest.fixture
def versions(model_store: Store) -> Store:
    for i in (1, 2):
        model_store.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
        )
    return model_store


def _tags(store: Store, version: int = 1) -> dict[str, str]:
    return {t.key: t.value for t in store.version_tags("m", version)}


def test_a_tag_set_is_listed_with_who_set_it_and_audited(versions: Store) -> None:
    assert versions.set_version_tag("m", 1, "ticket", "RISK-123", actor="alice") is True
    [tag] = versions.version_tags("m", 1)
    assert isinstance(tag, VersionTag)
    assert (tag.key, tag.value, tag.set_by) == ("ticket", "RISK-123", "alice")
    assert tag.set_at.tzinfo is not None
    [entry] = versions.audit_log(limit=10, action="set_tag")
    assert (entry.actor, entry.target) == ("alice", "m/v1")
    assert entry.details == {"key": "ticket", "value": "RISK-123", "previous": None}
    assert versions.version_tags("m", 2) == []
    assert versions.verify_audit() is None


def test_setting_a_tag_again_replaces_its_value_and_audits_the_previous(
    versions: Store,
) -> None:
    versions.set_version_tag("m", 1, "validation", "pending", actor="alice")
    assert versions.set_version_tag("m", 1, "validation", "passed", actor="bob") is True
    [tag] = versions.version_tags("m", 1)
    assert (tag.value, tag.set_by) == ("passed", "bob")
    newest = versions.audit_log(limit=10, action="set_tag")[0]
    assert newest.details == {"key": "validation", "value": "passed", "previous": "pending"}


def test_setting_the_value_a_tag_holds_writes_nothing(versions: Store) -> None:
    versions.set_version_tag("m", 1, "ticket", "RISK-1", actor="alice")
    assert versions.set_version_tag("m", 1, "ticket", "RISK-1", actor="bob") is False
    assert versions.version_tags("m", 1)[0].set_by == "alice"
    assert len(versions.audit_log(limit=10, action="set_tag")) == 1


def test_deleting_a_tag_removes_it_and_audits_its_value(versions: Store) -> None:
    versions.set_version_tag("m", 1, "ticket", "RISK-1", actor="alice")
    versions.set_version_tag("m", 1, "owner", "risk-team", actor="alice")
    assert versions.delete_version_tag("m", 1, "ticket", actor="bob") == "RISK-1"
    assert _tags(versions) == {"owner": "risk-team"}
    [entry] = versions.audit_log(limit=10, action="delete_tag")
    assert (entry.actor, entry.target) == ("bob", "m/v1")
    assert entry.details == {"key": "ticket", "value": None, "previous": "RISK-1"}


def test_deleting_a_tag_the_version_lacks_is_tag_not_found(versions: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        versions.delete_version_tag("m", 1, "ticket", actor="bob")
    assert info.value.code == "tag_not_found"
    assert "ticket" in info.value.message and "m" in info.value.message
    assert versions.audit_log(limit=10, action="delete_tag") == []


@pytest.mark.parametrize(
    ("model", "version", "code"),
    [("m", 9, "version_not_found"), ("nope", 1, "model_not_found")],
    ids=["unknown-version", "unknown-model"],
)
def test_tags_of_a_missing_version_are_refused_as_other_version_reads_are(
    versions: Store, model: str, version: int, code: str
) -> None:
    for call in (
        lambda: versions.set_version_tag(model, version, "k", "v", actor="alice"),
        lambda: versions.delete_version_tag(model, version, "k", actor="alice"),
        lambda: versions.version_tags(model, version),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.code == code
    assert versions.audit_log(limit=10, action="set_tag") == []


def test_tags_of_a_page_of_versions_are_read_together(versions: Store) -> None:
    versions.set_version_tag("m", 1, "b", "2", actor="alice")
    versions.set_version_tag("m", 1, "a", "1", actor="alice")
    versions.set_version_tag("m", 2, "a", "x", actor="alice")
    assert versions.tags_of_versions("m", [1, 2, 3]) == {1: {"a": "1", "b": "2"}, 2: {"a": "x"}}
    assert [t.key for t in versions.version_tags("m", 1)] == ["a", "b"]
    assert versions.tags_of_versions("m", []) == {}


def test_a_tag_is_not_set_when_its_audit_entry_cannot_be_written(versions: Store) -> None:
    break_audit_appends(versions)
    with pytest.raises(StoreError):
        versions.set_version_tag("m", 1, "ticket", "RISK-1", actor="alice")
    assert versions.version_tags("m", 1) == []


def test_a_tag_row_needs_its_version(versions: Store) -> None:
    """The foreign key: no tag of a version the registry does not hold."""
    row = {"model": "m", "version": 9, "key": "k", "value": "v", "set_by": "ci"}
    with pytest.raises(IntegrityError), versions.engine.begin() as conn:
        conn.execute(version_tags.insert().values(**row, set_at=utcnow()))
