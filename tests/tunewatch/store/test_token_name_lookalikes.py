"""Token names Unicode treats as the same name (NFKC, case folded) name one token.

``josé`` typed precomposed (NFC) and ``jose`` + a combining acute (NFD, as some
keyboards and file systems give it) print the same in ``tokens list`` and the audit log:
both were stored, so an operator who revoked ``josé`` left an active approver token
under the same visible name ("a name is never reused; it is the actor in the audit
log"). A name is now taken by its folded key as well, unique in the database, so two
concurrent creates of lookalikes cannot both succeed either.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic import command

from tunewatch._errors import ConflictError
from tunewatch.store import Store
from tunewatch.store._migrate import alembic_config
from tunewatch.store._schema import api_tokens
from tunewatch.store._tokens import token_name_key

# about making and migrating stores: each begins with no store file (not a migrated copy)
pytestmark = pytest.mark.new_store

NFC = "jos\u00e9"
NFD = "jose\u0301"


@pytest.mark.parametrize(
    "lookalike",
    [
        pytest.param(NFD, id="decomposed"),
        pytest.param("JOS\u00c9", id="upper_case"),
        pytest.param("JOSE\u0301", id="upper_case_decomposed"),
        pytest.param("\uff4aos\u00e9", id="fullwidth_j"),
    ],
)
def test_a_name_unicode_folds_to_a_token_s_is_token_exists(store: Store, lookalike: str) -> None:
    store.add_token(name=NFC, role="approver", token_hash="1" * 64, actor="alice")
    with pytest.raises(ConflictError) as info:
        store.add_token(name=lookalike, role="approver", token_hash="2" * 64, actor="alice")
    assert info.value.code == "token_exists"
    assert f"{lookalike!r}" in info.value.message and f"{NFC!r}" in info.value.message
    assert [t.name for t in store.list_tokens()] == [NFC]
    assert [(e.action, e.target) for e in store.audit_log()] == [("create_token", NFC)]


def test_a_revoked_token_s_lookalike_is_token_exists_too(store: Store) -> None:
    store.add_token(name=NFC, role="approver", token_hash="1" * 64, actor="alice")
    store.revoke_token(NFC, actor="alice")
    with pytest.raises(ConflictError) as info:
        store.add_token(name=NFD, role="approver", token_hash="2" * 64, actor="alice")
    assert info.value.code == "token_exists"


def test_names_that_only_look_near_are_distinct_tokens(store: Store) -> None:
    """Folding is NFKC and case: an accent that is not there, or another letter, is
    another name."""
    for at, name in enumerate((NFC, "jose", "josè")):
        store.add_token(name=name, role="viewer", token_hash=str(at) * 64, actor="alice")
    assert [t.name for t in store.list_tokens()] == [NFC, "jose", "josè"]


def test_a_lookalike_taken_by_a_concurrent_writer_is_token_exists(
    store: Store, store_url: str
) -> None:
    """Another transaction holds an uncommitted ``josé``: the store's insert of the
    decomposed lookalike waits on the folded key's unique index and is refused once
    that commits (without the index both were stored: the names differ)."""
    engine = sa.create_engine(store_url)
    outcome: list[BaseException | None] = []

    def add() -> None:
        try:
            store.add_token(name=NFD, role="viewer", token_hash="2" * 64, actor="bob")
            outcome.append(None)
        except BaseException as exc:  # the outcome is what the test asserts
            outcome.append(exc)

    try:
        with engine.connect() as other:
            other.execute(
                sa.insert(api_tokens).values(
                    name=NFC, role="viewer", token_hash="1" * 64, created_at=datetime.now(UTC)
                )
            )
            adder = threading.Thread(target=add)
            adder.start()
            if engine.dialect.name == "postgresql":  # until the insert waits on ours
                # a session blocked by ours (the whole server's waits ended the wait early)
                ours = other.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                waiting = sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :ours = ANY(pg_blocking_pids(pid))"
                ).bindparams(ours=ours)
                deadline = time.monotonic() + 10
                with engine.connect() as probe:
                    while not probe.execute(waiting).scalar() and time.monotonic() < deadline:
                        probe.rollback()
            other.commit()
        adder.join(30)
    finally:
        engine.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], ConflictError), outcome
    assert outcome[0].code == "token_exists", outcome[0]
    assert [t.name for t in store.list_tokens()] == [NFC]


def test_the_cli_refuses_a_decomposed_lookalike_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunewatch._cli import main

    url = f"sqlite:///{tmp_path / 'tw.db'}"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"url": url}}))
    create = ["--config", str(config), "tokens", "create"]
    assert main([*create, NFC, "--role", "approver"]) == 0
    capsys.readouterr()
    assert main([*create, NFD, "--role", "approver"]) == 2
    captured = capsys.readouterr()
    assert f"{NFD!r} reads as that name" in captured.err
    assert f"({NFD!a} beside {NFC!a})" in captured.err  # the spellings told apart
    assert "Traceback" not in captured.err and captured.out == ""  # no token shown
    with Store.open(url) as store:
        assert [t.name for t in store.list_tokens()] == [NFC]


# -- revision 0022: the folded key of the tokens stored before it ---------------------------


def _insert_0021(conn: sa.Connection, at: int, name: str) -> None:
    """A token as revision 0021 stored it; ``at`` is the id the store gives it."""
    token_id = conn.execute(
        sa.text(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) "
            "VALUES (:name, 'approver', :hash, CURRENT_TIMESTAMP) RETURNING id"
        ),
        {"name": name, "hash": f"{at:064x}"},
    ).scalar_one()
    assert token_id == at


def test_lookalikes_stored_before_0022_are_kept_and_named_and_new_ones_are_refused(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A store may hold lookalikes created before the key: the upgrade keeps every token
    (the first of each group holds the name's key, the later ones a key of their own),
    warns naming the later ones, and from then on no further lookalike is stored."""
    names = {1: NFC, 2: "bob", 3: NFD, 4: "Alice", 5: "alice", 6: "ALICE"}
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0021")
            for at, name in names.items():
                _insert_0021(conn, at, name)
            conn.execute(  # a dashboard session refers to a token by name
                sa.text(
                    "INSERT INTO dashboard_sessions (session_hash, token_name, created_at, "
                    "expires_at) VALUES (:h, :n, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"h": "f" * 64, "n": NFD},
            )
            conn.execute(
                sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE id = 1")
            )
        with (
            caplog.at_level(logging.WARNING, logger="tunewatch.store.migrations"),
            engine.begin() as conn,
        ):
            command.upgrade(alembic_config(conn), "0022")
            keys = dict(conn.execute(sa.text("SELECT id, name_key FROM api_tokens")).all())
            sessions = conn.execute(sa.text("SELECT token_name FROM dashboard_sessions")).all()
            revoked = conn.execute(
                sa.text("SELECT id FROM api_tokens WHERE revoked_at IS NOT NULL")
            ).all()
    finally:
        engine.dispose()
    assert keys[1] == token_name_key(NFC) and keys[4] == token_name_key("alice")
    assert keys[2] == token_name_key("bob")
    assert len(set(keys.values())) == len(names)  # 3, 5 and 6 got keys of their own
    assert sessions == [(NFD,)] and revoked == [(1,)]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{NFD!a} (id 3) reads as {NFC!a} (id 1)" in warning
    assert "'alice' (id 5) reads as 'Alice' (id 4)" in warning
    assert "'ALICE' (id 6) reads as 'Alice' (id 4)" in warning
    assert "tunewatch tokens revoke" in warning

    store = Store.open(store_url)
    try:
        assert [t.name for t in store.list_tokens()] == list(names.values())
        for lookalike in ("JOSÉ", "aLiCe", "BOB"):
            with pytest.raises(ConflictError) as info:
                store.add_token(name=lookalike, role="viewer", token_hash="e" * 64, actor="a")
            assert info.value.code == "token_exists"
        store.revoke_token("ALICE", actor="ops")  # each kept token is still its own
        assert store.add_token(name="carol", role="viewer", token_hash="d" * 64, actor="a")
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0021")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("api_tokens")}
            command.upgrade(alembic_config(conn), "head")
        assert "name_key" not in columns
        assert len(store.list_tokens()) == len(names) + 1
        with pytest.raises(ConflictError):
            store.add_token(name="Carol", role="viewer", token_hash="c" * 64, actor="a")
    finally:
        store.close()


def test_a_store_without_lookalikes_upgrades_to_0022_without_a_warning(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0021")
            _insert_0021(conn, 1, NFC)
        with (
            caplog.at_level(logging.WARNING, logger="tunewatch.store.migrations"),
            engine.begin() as conn,
        ):
            command.upgrade(alembic_config(conn), "0022")
            keys = conn.execute(sa.text("SELECT name_key FROM api_tokens")).scalars().all()
    finally:
        engine.dispose()
    assert keys == [token_name_key(NFD)]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("typed", [NFD, "JOS\u00c9"], ids=["decomposed", "upper_case"])
def test_a_token_is_revoked_and_rotated_by_any_spelling_of_its_name(
    store: Store, typed: str
) -> None:
    """One name however Unicode spells it: `tokens revoke` typed on a keyboard that
    decomposes `é` answered "no API token named" for the token `josé`."""
    store.add_token(name=NFC, role="approver", token_hash="1" * 64, actor="alice")
    revoked = store.revoke_token(typed, actor="alice")
    assert revoked.name == NFC and revoked.revoked_at is not None
    assert [(e.action, e.target) for e in store.audit_log(limit=1)] == [("revoke_token", NFC)]
    old, new = store.rotate_token(typed, token_hash="2" * 64, actor="alice")
    assert (old.name, new.name) == (NFC, f"{NFC}#2")
