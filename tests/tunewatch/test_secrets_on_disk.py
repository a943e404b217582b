"""A store URL may carry a password: it is neither printed nor left readable to others."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.tunewatch.conftest import make_daemon
from tunewatch import ConfigError
from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import make_engine, redact_url


@pytest.mark.postgres
def test_migrate_prints_the_store_url_without_its_password(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_url.replace("postgres@", "postgres:s3cret-pw@", 1)  # trust auth ignores it
    assert "s3cret-pw" in url
    monkeypatch.setenv("TUNEWATCH_STORE_URL", url)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "is at the latest schema" in out and "***" in out
    assert "s3cret-pw" not in out


@pytest.mark.postgres
def test_migrate_hides_a_password_given_in_the_url_query(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLAlchemy's psycopg dialect hands `?password=` to libpq, a working way to give
    the password: only the userinfo's was hidden, so `migrate` printed this one."""
    url = f"{pg_url}&password=s3cret-pw&sslpassword=k3y-pw"  # trust auth ignores them
    monkeypatch.setenv("TUNEWATCH_STORE_URL", url)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "is at the latest schema" in out
    assert "password=***" in out and "sslpassword=***" in out
    assert "options=-csearch_path" in out  # the rest of the URL still reads
    assert "s3cret-pw" not in out and "k3y-pw" not in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://tw@db/tw?password=s3cret-pw&application_name=x",
            "postgresql+psycopg://tw@db/tw?application_name=x&password=***",
        ),
        (
            "postgresql+psycopg://tw:s3cret-pw@db/tw?SSLPassword=s3cret-pw",
            "postgresql+psycopg://tw:***@db/tw?SSLPassword=***",
        ),
        (
            "postgresql+psycopg://tw@db/tw?password=s3cret-pw&password=s3cret-pw",
            "postgresql+psycopg://tw@db/tw?password=***&password=***",
        ),
    ],
    ids=["query-password", "sslpassword-any-case", "repeated-key"],
)
def test_redact_url_hides_password_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_refused_store_url_is_quoted_without_its_query_password() -> None:
    """The errors quoting a refused URL go through `redact_url` too."""
    with pytest.raises(ConfigError) as info:
        make_engine("postgresql+psycopg2://tw@db/tw?password=s3cret-pw")
    assert "password=***" in info.value.message and "s3cret-pw" not in info.value.message


def test_the_worker_config_is_readable_by_its_owner_only(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The effective config, written for tuning workers, holds the store URL (and so its
    password) and was world-readable under the usual umask; it goes with its daemon."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        [written] = list(tmp_path.glob("worker-config.*.yaml"))
        assert written == daemon.launcher.config_path
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    finally:
        daemon.close()
    assert list(tmp_path.glob("worker-config*")) == []
