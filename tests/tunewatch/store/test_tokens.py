"""API token names are the audit log's actors: they follow its rule on every backend."""

from __future__ import annotations

import pytest

from tunewatch._errors import InvalidValueError
from tunewatch.store import Store


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("tab\there", id="a_tab"),
        pytest.param("ops\n    99  2026-01-01 00:00:00  alice  promote  credit/v2", id="a_newline"),
        pytest.param("ops\x00", id="a_nul"),
        pytest.param("ops\udcff", id="a_lone_surrogate"),
        pytest.param("x" * 101, id="longer_than_the_column"),
    ],
)
def test_token_name_must_be_a_valid_actor(store: Store, name: str) -> None:
    """A token's name is the actor of everything done with it. Names the actor rule
    refuses were stored: an empty one, a tab, a newline that forged a line in `tunewatch
    audit`; a 150-character one was stored on SQLite and refused by PostgreSQL's
    VARCHAR(100) with a raw DataError."""
    with pytest.raises(InvalidValueError) as info:
        store.add_token(name=name, role="viewer", token_hash="1" * 64, actor="alice")
    assert "token `name` must be 1 to 100 printable characters" in info.value.message
    assert f"got {len(name)} characters" in info.value.message
    assert store.list_tokens() == [] and store.audit_log() == []


def test_a_token_name_of_the_column_s_length_is_stored(store: Store) -> None:
    name = "ci bot " + "x" * 93  # spaces are printable: an actor may hold them
    assert store.add_token(name=name, role="viewer", token_hash="1" * 64, actor="alice").name == (
        name
    )
    assert [(e.actor, e.target) for e in store.audit_log()] == [("alice", name)]
