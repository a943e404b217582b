"""A store URL may carry a password: it is neither printed nor left readable to others."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.tunewatch.conftest import make_daemon
from tunewatch._cli import main
from tunewatch._example import ExampleModel


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


def test_the_worker_config_is_readable_by_its_owner_only(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The effective config, written for tuning workers, holds the store URL (and so its
    password) and was world-readable under the usual umask."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        [written] = list(tmp_path.glob("worker-config.yaml"))
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    finally:
        daemon.close()
