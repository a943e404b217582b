"""SQLite engine settings, read/write transaction modes and canonical JSON."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunewatch.store import Store, canonical_json, hyperparameter_set_id, make_engine


@pytest.mark.parametrize("synchronous,expected", [("NORMAL", 1), ("FULL", 2)])
def test_sqlite_engine_uses_wal_busy_timeout_foreign_keys_and_chosen_synchronous(
    tmp_path: Path, synchronous: str, expected: int
) -> None:
    db = tmp_path / "nested" / "dir" / "t.db"
    engine = make_engine(f"sqlite:///{db}", sqlite_synchronous=synchronous)  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": expected,
            "busy_timeout": 30000,
            "foreign_keys": 1,
        }
        assert db.parent.is_dir()
    finally:
        engine.dispose()


def test_sqlite_reads_proceed_while_a_write_transaction_is_open(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        with store.engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
            writer.execute(sa.text("UPDATE models SET regulated = 1"))
            assert store.get_model("m").regulated is False  # not blocked, sees committed
        assert store.get_model("m").regulated is True
    finally:
        store.close()


def test_a_home_relative_url_opens_the_file_its_checkpointer_watches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sqlite:///~/…` made the expanded directory but opened the literal `~/…` path
    (relative to the working directory), while the WAL checkpointer watched the expanded
    file, which never existed: the WAL was never checkpointed and grew without bound."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~" / "tw").mkdir(parents=True)  # a literal `~` path would open too
    expected = home / "tw" / "tunewatch.db"
    store = Store.open("sqlite:///~/tw/tunewatch.db")
    try:
        store.append_audit(actor="ops", action="x", target="t", details={})
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("PRAGMA database_list").all()
        assert [file for _, name, file in rows if name == "main"] == [str(expected)]
        assert store._checkpointer is not None
        assert store._checkpointer._path == str(expected)
        assert [r.mode for r in store._checkpointer.checkpoint()] == ["PASSIVE"]
        assert not (tmp_path / "~" / "tw" / "tunewatch.db").exists()
    finally:
        store.close()


def test_unknown_synchronous_level_is_refused() -> None:
    with pytest.raises(ValueError, match="NORMAL, FULL"):
        make_engine("sqlite://", sqlite_synchronous="OFF")  # type: ignore[arg-type]


def test_canonical_json_is_sorted_compact_and_refuses_nan() -> None:
    assert canonical_json({"b": 0.1, "a": [1, True, None]}) == '{"a":[1,true,null],"b":0.1}'
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    assert hyperparameter_set_id({"a": 1, "b": 2}) == hyperparameter_set_id({"b": 2, "a": 1})
    assert len(hyperparameter_set_id({})) == 64


def test_a_new_sqlite_store_and_its_wal_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    """Under the usual umask (022) the database, holding every scored request's features,
    the labels and the audit log, was 0644: any local user could read it, while the
    artefacts beside it were 0600."""
    import os

    old = os.umask(0o022)
    try:
        store = Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
        store.ensure_model(name="m", task="binary", feature_names=["x"])  # writes: a WAL
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "data").iterdir()}
        folder = (tmp_path / "data").stat().st_mode & 0o777
        store.close()
    finally:
        os.umask(old)
    assert "tunewatch.db-wal" in modes, modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    # the directory it made too: reports and the tuning storage live beside the store
    assert folder == 0o700, oct(folder)


@pytest.mark.parametrize(
    "query", ["timeout=abc", "check_same_thread=maybe"], ids=["timeout", "check-same-thread"]
)
def test_a_sqlite_url_query_value_the_driver_cannot_take_is_a_config_error(
    tmp_path: Path, query: str
) -> None:
    """`tunewatch migrate` printed a traceback ending in the driver's ValueError."""
    from tunewatch._errors import ConfigError

    with pytest.raises(ConfigError, match="query") as caught:
        make_engine(f"sqlite:///{tmp_path}/tw.db?{query}")
    assert caught.value.code == "invalid_store_url"


def test_a_pool_that_stays_exhausted_is_the_store_unavailable(sqlite_url: str) -> None:
    """Every connection held past the pool's timeout was a StoreError (500, and the
    recorder retried a group record by record, a pool timeout each); it is a 503."""
    from sqlalchemy import text

    from tunewatch._errors import StoreUnavailableError
    from tunewatch.store._engine import transaction

    engine = make_engine(sqlite_url).execution_options()
    engine = engine.engine
    engine.pool._timeout = 0.05  # type: ignore[attr-defined]
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]  # type: ignore[attr-defined]
    try:
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            with transaction(engine, "probe") as conn:
                conn.execute(text("SELECT 1"))
    finally:
        for conn in held:
            conn.close()
        engine.dispose()


def test_an_unreachable_database_is_logged_with_the_driver_text_the_error_keeps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The HTTP layer answers a fixed message (the driver's text names the database's
    host, port and user); the error keeps the text for the CLI, and the log has it."""
    from tunewatch._errors import StoreUnavailableError

    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/test")
    caplog.set_level(logging.WARNING, logger="tunewatch.store")
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            store.ping()
    finally:
        store.close()
    assert "127.0.0.1" in caught.value.message and "port 1 " in caught.value.message
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("127.0.0.1" in m and "port 1 " in m for m in logged), logged


def test_a_pool_exhausted_under_the_scoring_log_s_writer_is_logged(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The scoring log's write scope raised StoreUnavailableError for a pool that stayed
    exhausted without a word in the log, where the HTTP answer sends an operator."""
    from tunewatch._errors import StoreUnavailableError
    from tunewatch.store._engine import sqlite_write

    engine = make_engine(sqlite_url)
    engine.pool._timeout = 0.05  # type: ignore[attr-defined]
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING, logger="tunewatch.store")
    try:
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            with sqlite_write(engine, "write_records") as cursor:
                cursor.execute("SELECT 1")
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("write_records" in m and "QueuePool" in m for m in logged), logged
