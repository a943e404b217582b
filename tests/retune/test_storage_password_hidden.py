"""A tuning storage's password never reaches a message: a history study missing from a
PostgreSQL storage was reported with the storage's URL in clear, and the dashboard logged
that message at every view of the tuning page (docs/configuration.md: passwords are shown
as ``***``)."""

from __future__ import annotations

import pytest

from retune import WarmStartError, load_history
from retune._optuna._storage import _shown_storage


@pytest.mark.postgres
def test_a_missing_history_study_is_reported_without_the_storage_password(
    pg_url: str,
) -> None:
    storage = pg_url.replace("://postgres@", "://postgres:pw-secret@", 1)
    assert "pw-secret" in storage  # trust auth ignores it

    with pytest.raises(WarmStartError) as raised:
        load_history(storage, ["gone"])

    message = str(raised.value)
    assert "history study 'gone' does not exist in" in message
    assert "pw-secret" not in message
    assert "postgresql+psycopg://postgres:***@127.0.0.1:5432/test?options=" in message


@pytest.mark.parametrize(
    ("storage", "shown"),
    [
        pytest.param(
            "postgresql+psycopg://user:Tun3-pw-abc@127.0.0.1:5432/db",
            "postgresql+psycopg://user:***@127.0.0.1:5432/db",
            id="userinfo",
        ),
        pytest.param(
            "postgresql://user:a/b?c@db.internal/tuning?sslmode=require",
            "postgresql://user:***@db.internal/tuning?sslmode=require",
            id="userinfo-password-holding-slash-and-question-mark",
        ),
        pytest.param(
            "postgresql://user:p@ss@db.internal/tuning",
            "postgresql://user:***@db.internal/tuning",
            id="userinfo-password-holding-an-unencoded-at",
        ),
        pytest.param(
            "postgresql://db.internal/tuning?user=u&PassWord=secret&sslpassword=key-pw&a=1",
            "postgresql://db.internal/tuning?user=u&PassWord=***&sslpassword=***&a=1",
            id="query-keys-naming-a-password",
        ),
        pytest.param(
            "postgresql://user@db.internal:5432/tuning",
            "postgresql://user@db.internal:5432/tuning",
            id="no-password",
        ),
        pytest.param(
            "sqlite:////var/lib/tw/optuna.db", "sqlite:////var/lib/tw/optuna.db", id="sqlite"
        ),
        pytest.param("/var/lib/tw/journal.log", "/var/lib/tw/journal.log", id="journal-file"),
    ],
)
def test_a_storage_is_shown_with_its_password_as_stars(storage: str, shown: str) -> None:
    assert _shown_storage(storage) == shown
