"""A study in an SQLite file goes on while another connection reads the file.

``tunewatch backup`` snapshots ``optuna.db`` with ``VACUUM INTO``: one read transaction,
held as long as the copy takes. In SQLite's default rollback-journal mode a reader blocks
every writer's commit, and Optuna's connections waited pysqlite's 5 s, then failed: trials
of a running job ended FAIL with "database is locked" while a backup of a 1.4 GB tuning
storage ran. The storage is opened in WAL mode, where readers never block the writer."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import optuna
import pytest

from retune._optuna import close_storage, make_storage


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_a_trial_is_written_while_another_connection_holds_a_read(
    tmp_path: Path, scheme: str
) -> None:
    """Whatever the URL's spelling of SQLite (the config takes a driver, as SQLAlchemy
    does: ``sqlite+pysqlite://`` was left in rollback mode)."""
    path = tmp_path / "optuna.db"
    backend = make_storage(f"{scheme}:///{path}", heartbeat_interval=None)
    try:
        study = optuna.create_study(study_name="s", storage=backend)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        reader = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM trials").fetchone() == (1,)
            # the reader's transaction is open: in rollback-journal mode this trial's
            # commit waited for it (5 s), then raised "database is locked"
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
            assert reader.execute("SELECT count(*) FROM trials").fetchone() == (1,)  # its snapshot
            reader.execute("COMMIT")
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            reader.close()
        states = [t.state for t in study.get_trials()]
        assert states == [optuna.trial.TrialState.COMPLETE] * 2
    finally:
        close_storage(backend)


def test_a_file_in_use_in_rollback_mode_is_opened_as_it_is_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ``optuna.db`` made before WAL, read by another process when a job opens it: the
    switch needs the file to itself, so the storage opens in rollback mode, warns, and
    switches at a later open."""
    path = tmp_path / "optuna.db"
    before = optuna.storages.RDBStorage(f"sqlite:///{path}")  # made as Optuna makes it
    optuna.create_study(study_name="s", storage=before)
    close_storage(before)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM studies").fetchone()
        with caplog.at_level(logging.WARNING, logger="retune"):
            backend = make_storage(f"sqlite:///{path}", heartbeat_interval=None)
        close_storage(backend)
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert "could not switch it to WAL mode" in caplog.text
        reader.execute("COMMIT")
    finally:
        reader.close()
    close_storage(make_storage(f"sqlite:///{path}", heartbeat_interval=None))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
