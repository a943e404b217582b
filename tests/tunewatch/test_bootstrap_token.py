"""The admin token from ``TUNEWATCH_ADMIN_TOKEN``: created once, rotated by changing it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import break_audit_appends
from tunewatch._auth import hash_token
from tunewatch._bootstrap_token import ensure_bootstrap_token, warn_of_bootstrap_lookalikes
from tunewatch._errors import ConfigError, ConflictError, StoreError
from tunewatch.store import Store, TokenRow
from tunewatch.store._schema import api_tokens


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'tw.db'}")
    s.migrate()
    return s


def _active(store: Store) -> set[str]:
    return {t.token_hash for t in store.list_tokens() if t.revoked_at is None}


def test_the_same_token_at_every_start_is_stored_once(store: Store) -> None:
    for _ in range(3):
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    assert len(store.list_tokens()) == 1
    assert _active(store) == {hash_token("a" * 32)}


def test_rotating_leaves_only_the_newest_token_working(store: Store) -> None:
    """Only the row named `bootstrap-admin` used to be revoked: from the second rotation
    on, every earlier admin token stayed valid."""
    for token in ("a" * 32, "b" * 32, "c" * 32, "d" * 32):
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": token})
        assert _active(store) == {hash_token(token)}
    assert len(store.list_tokens()) == 4


def test_a_revoked_token_is_refused_with_a_clear_error(store: Store) -> None:
    """Going back to a revoked token crashed the start on a unique constraint; it must
    not come back to life either."""
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "b" * 32})
    with pytest.raises(ConfigError, match="TUNEWATCH_ADMIN_TOKEN.*revoked"):
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    assert _active(store) == {hash_token("b" * 32)}


def test_other_admin_tokens_are_left_alone(store: Store) -> None:
    store.add_token(name="ops-admin", role="admin", token_hash=hash_token("o" * 32), actor="ops")
    store.add_token(
        name="bootstrap-admin-ci", role="admin", token_hash=hash_token("x" * 32), actor="ops"
    )
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "b" * 32})
    assert _active(store) == {hash_token(t * 32) for t in "oxb"}


@pytest.mark.parametrize("other_replica", ["before", "after"])
def test_replicas_rotating_the_token_together_both_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_replica: str
) -> None:
    """Two replicas started after a rotation: the one that read the tokens before the other
    revoked and stored died on 'already revoked' / 'exists'; one that read them after
    took the other's new token for a revoked one."""
    url = f"sqlite:///{tmp_path / 'tw.db'}"
    first, other, racing = Store.open(url), Store.open(url), Store.open(url)
    first.migrate()
    ensure_bootstrap_token(first, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    rotated = {"TUNEWATCH_ADMIN_TOKEN": "b" * 32}
    read = racing.list_tokens

    def read_while_the_other_replica_rotates() -> list[TokenRow]:
        if other_replica == "after":
            ensure_bootstrap_token(other, rotated)
            return read()
        rows = read()
        ensure_bootstrap_token(other, rotated)
        return rows

    monkeypatch.setattr(racing, "list_tokens", read_while_the_other_replica_rotates)
    ensure_bootstrap_token(racing, rotated)
    assert [(t.name, t.revoked_at is None) for t in first.list_tokens()] == [
        ("bootstrap-admin", False),
        ("bootstrap-admin-2", True),
    ]
    assert _active(first) == {hash_token("b" * 32)}
    actions = [(e.action, e.target) for e in first.audit_log()]
    assert sorted(actions) == [
        ("create_token", "bootstrap-admin"),
        ("create_token", "bootstrap-admin-2"),
        ("revoke_token", "bootstrap-admin"),
    ]


def test_a_bootstrap_token_whose_audit_append_fails_is_not_stored(store_url: str) -> None:
    """The token was stored in one transaction and audited in a second: a failing append
    left an active admin token with no audit entry."""
    with Store.open(store_url) as store:
        break_audit_appends(store)
        with pytest.raises(StoreError):
            ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
        assert store.list_tokens() == []


def test_a_rotation_whose_audit_append_fails_revokes_nothing(store_url: str) -> None:
    with Store.open(store_url) as store:
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
        break_audit_appends(store)
        with pytest.raises(StoreError):
            ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "b" * 32})
        assert _active(store) == {hash_token("a" * 32)}
        assert [t.name for t in store.list_tokens()] == ["bootstrap-admin"]


def test_the_admin_cannot_approve_their_own_request_after_rotating_the_token(
    store: Store,
) -> None:
    store.ensure_model(name="m", task="binary", feature_names=["a"], regulated=True)
    store.add_version(
        model="m", artefact_sha256="1" * 64, hyperparameters={}, size_bytes=1, actor="ci"
    )
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "a" * 32})
    first = store.token_by_hash(hash_token("a" * 32))
    assert first is not None
    request = store.request_approval(
        "m", 1, requested_by=first.name, reason="please", rules=["regulated model"]
    )
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "b" * 32})
    second = store.token_by_hash(hash_token("b" * 32))
    assert second is not None and second.name != first.name
    with pytest.raises(ConflictError) as info:
        store.decide_approval(request.id, approver=second.name, approve=True, reason="lgtm")
    assert info.value.code == "same_person"
    assert store.champion("m") is None


def test_a_token_with_surrounding_whitespace_works_as_its_bearer_form(store: Store) -> None:
    """A secret file ending in a newline, mounted as the variable, was hashed with the
    newline, and no Authorization header (whose token is stripped) could match it."""
    token = "tw_from_a_secret_file_" + "f" * 20
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": f" {token}\n"})
    assert _active(store) == {hash_token(token)}
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": token})
    assert len(store.list_tokens()) == 1  # the same token, not a rotation


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a", id="one-character"),
        pytest.param("tw_" + "x" * 28, id="31-characters"),
        pytest.param("  tw_" + "x" * 28 + "\n", id="31-characters-once-stripped"),
    ],
)
def test_a_token_shorter_than_32_characters_is_refused_naming_its_length(
    store: Store, value: str
) -> None:
    """A one-character TUNEWATCH_ADMIN_TOKEN became an admin token: stored as an unsalted
    sha256 and tried without a rate limit, it is guessed at once."""
    with pytest.raises(ConfigError) as info:
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": value})
    message = info.value.message
    length = len(value.strip())
    assert message.startswith(
        f"TUNEWATCH_ADMIN_TOKEN must be at least 32 characters (without surrounding "
        f"whitespace), got {length}"
    )
    assert "secrets.token_urlsafe(32)" in message
    assert length == 1 or value.strip() not in message  # the secret stays unsaid
    assert store.list_tokens() == []


def test_a_short_token_stored_before_the_rule_is_named_with_how_to_revoke_it(
    store: Store,
) -> None:
    """Refused at start, the operator unset the variable, and the short token it had
    created before the rule stayed a working admin token."""
    store.add_token(
        name="bootstrap-admin",
        role="admin",
        token_hash=hash_token("changeme"),
        actor="tunewatch",
        bootstrap=True,
    )
    with pytest.raises(ConfigError) as info:
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": "changeme"})
    message = info.value.message
    assert "'bootstrap-admin' this value created is still active" in message
    assert "tunewatch tokens revoke bootstrap-admin" in message
    assert "changeme" not in message


def test_a_token_of_32_characters_is_stored(store: Store) -> None:
    ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": " " + "k" * 32 + "\n"})
    assert _active(store) == {hash_token("k" * 32)}


def test_no_one_can_create_a_token_under_the_bootstrap_admin_s_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch tokens create bootstrap-admin-7` made a token the same-person rule took
    for the bootstrap admin, and the next rotation revoked it; the variable's own tokens
    are still stored and rotated under those names."""
    import yaml

    from tunewatch._cli import main

    url = f"sqlite:///{tmp_path / 'tw.db'}"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"url": url}}))
    create = ["--config", str(config), "tokens", "create", "bootstrap-admin-7"]
    assert main([*create, "--role", "approver"]) == 2
    err = capsys.readouterr().err
    assert "token `name` must not be 'bootstrap-admin' or 'bootstrap-admin-<n>'" in err
    assert "Traceback" not in err
    with Store.open(url) as store:
        assert store.list_tokens() == []
        for token in ("a" * 32, "b" * 32):
            ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": token})
        assert [(t.name, t.revoked_at is None) for t in store.list_tokens()] == [
            ("bootstrap-admin", False),
            ("bootstrap-admin-2", True),
        ]


@pytest.mark.parametrize(
    ("token", "named", "position"),
    [
        ("tw_€uro-admin-token", "U+20AC", 4),
        ("tw_admin\ttoken", "U+0009", 9),
        ("  tw_admin\x7ftoken", "U+007F", 11),  # counted in the value as set
    ],
    ids=["euro-sign", "tab", "delete-after-leading-spaces"],
)
def test_a_token_that_is_not_printable_ascii_is_refused_naming_where(
    store: Store, token: str, named: str, position: int
) -> None:
    """`tw_€uro-admin-token` was stored, yet no Authorization header could carry it
    (headers are Latin-1) and the dashboard's sign-in with it was a 500."""
    with pytest.raises(ConfigError) as info:
        ensure_bootstrap_token(store, {"TUNEWATCH_ADMIN_TOKEN": token})
    message = info.value.message
    assert message.startswith("TUNEWATCH_ADMIN_TOKEN must be printable ASCII")
    assert f"{named} at position {position}" in message
    assert token.strip() not in message and "admin" not in message  # the secret stays unsaid
    assert store.list_tokens() == []


@pytest.mark.parametrize(
    ("token", "said", "unsaid"),
    [
        pytest.param(
            "tw_€uro-admin-token",
            ("TUNEWATCH_ADMIN_TOKEN must be printable ASCII", "position 4"),
            "€uro",
            id="not-ascii",
        ),
        pytest.param(
            "changeme",
            ("TUNEWATCH_ADMIN_TOKEN must be at least 32 characters", "got 8"),
            "changeme",
            id="short",
        ),
    ],
)
def test_the_daemon_refuses_to_start_with_a_token_it_cannot_take(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    token: str,
    said: tuple[str, str],
    unsaid: str,
) -> None:
    import uvicorn
    import yaml

    from tunewatch._cli import main

    def serving(*args: object, **kwargs: object) -> None:
        raise AssertionError("the daemon started serving")  # rather than hang the test

    url = f"sqlite:///{tmp_path / 'tw.db'}"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"url": url}}))
    monkeypatch.setenv("TUNEWATCH_ADMIN_TOKEN", token)
    monkeypatch.setattr(uvicorn, "run", serving)
    assert main(["--config", str(config), "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in said), err
    assert unsaid not in err and "Traceback" not in err
    with Store.open(url) as store:
        assert store.list_tokens() == []


def test_an_active_token_stored_under_a_name_now_refused_is_named_at_start(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """`Bootstrap-Admin-7` was an ordinary name until names that read as the bootstrap
    admin's once case is folded were refused: one stored before still works, as another
    person, and the start says so (once revoked, nothing)."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(api_tokens).values(
                name="Bootstrap-Admin-7",
                role="approver",
                token_hash="1" * 64,
                created_at=datetime.now(UTC),
            )
        )
    store.add_token(name="bootstrap-admin-ci", role="viewer", token_hash="2" * 64, actor="t")
    with caplog.at_level(logging.WARNING, logger="tunewatch._daemon"):
        warn_of_bootstrap_lookalikes(store)
    [record] = caplog.records
    assert "'Bootstrap-Admin-7'" in record.getMessage()
    assert "tunewatch tokens revoke" in record.getMessage()
    caplog.clear()
    store.revoke_token("Bootstrap-Admin-7", actor="ops")
    with caplog.at_level(logging.WARNING, logger="tunewatch._daemon"):
        warn_of_bootstrap_lookalikes(store)
    assert caplog.records == []
