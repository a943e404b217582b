"""API token names are the audit log's actors: they follow its rule on every backend."""

from __future__ import annotations

import pytest

from tunewatch._errors import ConflictError, InvalidValueError
from tunewatch.store import Store
from tunewatch.store._tokens import token_name_key


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


def test_a_token_name_taken_by_a_concurrent_writer_is_token_exists(
    store: Store, store_url: str
) -> None:
    """On PostgreSQL the name check read nothing while another transaction held an
    uncommitted token of that name; the insert then waited, hit the unique index and
    answered the driver's text under code ``conflict`` (SQLite: ``token_exists``)."""
    import threading
    import time

    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    outcome: list[BaseException | None] = []

    def add() -> None:
        try:
            store.add_token(name="tok", role="viewer", token_hash="2" * 64, actor="bob")
            outcome.append(None)
        except BaseException as exc:  # the outcome is what the test asserts
            outcome.append(exc)

    try:
        with engine.connect() as other:
            other.execute(
                sa.text(
                    "INSERT INTO api_tokens (name, name_key, role, token_hash, created_at) "
                    "VALUES ('tok', :k, 'viewer', :h, CURRENT_TIMESTAMP)"
                ),
                {"k": token_name_key("tok"), "h": "1" * 64},
            )
            adder = threading.Thread(target=add)
            adder.start()
            if engine.dialect.name == "postgresql":  # wait until the insert waits on ours
                # a session blocked by ours (the whole server's waits ended the wait early)
                ours = other.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                waiting = sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :ours = ANY(pg_blocking_pids(pid))"
                ).bindparams(ours=ours)
                deadline = time.monotonic() + 10
                with engine.connect() as probe:
                    while not probe.execute(waiting).scalar() and time.monotonic() < deadline:
                        time.sleep(0.02)
            other.commit()
        adder.join(30)
    finally:
        engine.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], ConflictError), outcome
    assert outcome[0].code == "token_exists", outcome[0]
    assert "an API token named 'tok' exists" in outcome[0].message


@pytest.mark.parametrize("name", ["bootstrap-admin", "bootstrap-admin-2", "bootstrap-admin-7"])
def test_a_token_cannot_take_a_name_of_the_bootstrap_admin(store: Store, name: str) -> None:
    """A token created as `bootstrap-admin-7` (for a person called carol) was the
    bootstrap admin to the same-person rule, and the next change of
    TUNEWATCH_ADMIN_TOKEN revoked it."""
    with pytest.raises(InvalidValueError) as info:
        store.add_token(name=name, role="approver", token_hash="1" * 64, actor="alice")
    assert info.value.code == "invalid_value"
    assert "token `name` must not be 'bootstrap-admin' or 'bootstrap-admin-<n>'" in (
        info.value.message
    )
    assert f"got {name!r}" in info.value.message
    assert store.list_tokens() == [] and store.audit_log() == []


@pytest.mark.parametrize("name", ["bootstrap-admin-ci", "bootstrap-admin-", "bootstrap-admins"])
def test_names_near_the_bootstrap_admin_s_are_ordinary(store: Store, name: str) -> None:
    assert store.add_token(name=name, role="admin", token_hash="1" * 64, actor="alice").name == (
        name
    )
