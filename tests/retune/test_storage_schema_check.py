"""Opening an RDB storage checks its schema revision against Optuna's head, which Optuna
read by loading its migration scripts at every opening (~22 ms of CPU each time: every
progress read, report, archive sweep and tuning-page view opens one). The head is read once
per process; a storage at another revision is still refused with Optuna's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.storages._rdb.storage import _VersionManager
from sqlalchemy import create_engine, text

from retune._optuna import close_storage, make_storage


def test_reopening_a_storage_does_not_read_optuna_s_head_revision_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    close_storage(make_storage(url, heartbeat_interval=None))
    reads: list[str] = []
    head = _VersionManager.get_head_version

    def counted(self: _VersionManager) -> str:
        reads.append(self.url)
        return head(self)

    monkeypatch.setattr(_VersionManager, "get_head_version", counted)
    for _ in range(3):
        close_storage(make_storage(url, heartbeat_interval=None))
    assert reads == []


def test_a_storage_at_another_schema_revision_is_still_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    close_storage(make_storage(url, heartbeat_interval=None))  # the head read, and kept
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'v1.3.0.a'"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="no longer compatible with the table schema"):
        make_storage(url, heartbeat_interval=None)


def test_a_storage_opened_without_the_check_is_pickled_to_check_again(tmp_path: Path) -> None:
    backend = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=None)
    try:
        assert backend.__getstate__()["skip_compatibility_check"] is False
    finally:
        close_storage(backend)
