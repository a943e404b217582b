"""With a store every replica shares (PostgreSQL) and `tuning.storage_url` unset, each
host tunes its studies into its own `<data_dir>/optuna.db`: a new leader after a failover
cannot resume or learn from the studies tuned on the host before it. The daemon says so
when it starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tunewatch._config import build_config
from tunewatch._daemon import Daemon

UNSHARED = "tuning.storage_url is unset"


def _started_logs(
    tmp_path: Path, pg_url: str, tuning: dict[str, object], caplog: pytest.LogCaptureFixture
) -> list[str]:
    raw = {
        "data_dir": str(tmp_path / "data"),
        "store": {"url": pg_url},
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, **tuning},
    }
    daemon = Daemon(build_config(raw, env={}), env={})
    try:
        with caplog.at_level(logging.WARNING, logger="tunewatch._daemon"):
            daemon.start()
    finally:
        daemon.close()
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.postgres
def test_a_daemon_on_a_shared_store_with_the_default_tuning_storage_warns_once_at_start(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = [m for m in _started_logs(tmp_path, pg_url, {}, caplog) if UNSHARED in m]
    assert len(warnings) == 1
    path = (tmp_path / "data").resolve() / "optuna.db"
    assert warnings[0] == (
        f"tuning.storage_url is unset: studies go to {path} on this host only; replicas and "
        "workers on other hosts cannot join or learn from them — set tuning.storage_url to a "
        "storage every host shares (PostgreSQL, or a journal file on shared storage)"
    )


@pytest.mark.postgres
def test_a_daemon_on_a_shared_store_with_a_tuning_storage_set_does_not_warn(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 'shared-optuna.db'}"
    warnings = _started_logs(tmp_path, pg_url, {"storage_url": storage}, caplog)
    assert not [m for m in warnings if UNSHARED in m]
