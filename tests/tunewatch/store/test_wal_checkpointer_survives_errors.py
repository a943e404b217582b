"""The WAL checkpointer's thread outlives a round that raised what it did not expect: the
store turns SQLite's own checkpoints off, so one ``MemoryError`` that ended the thread
left the WAL growing without bound (35 MiB, then 213 MiB and growing), and nothing
said so. A round that fails on SQLite (a full disk) is logged once while it lasts."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunewatch.store import Store
from tunewatch.store._checkpoint import RESTART_PAGES, CheckpointResult, WalCheckpointer

_ROW = b"x" * 3000  # about a page a row


class _FailsItsFirstRound(WalCheckpointer):
    """A checkpointer whose first round raises ``MemoryError``; ``done`` is set once a
    round has rewound the WAL, or once the thread ends."""

    def __init__(self, path: str) -> None:
        super().__init__(path, interval_s=0.01)
        self.rounds = 0
        self.rewound: list[CheckpointResult] = []
        self.done = threading.Event()

    def checkpoint(self) -> list[CheckpointResult]:
        self.rounds += 1
        if self.rounds == 1:
            raise MemoryError("injected: the first round")
        results = super().checkpoint()
        restarts = [r for r in results if r.mode == "RESTART" and not r.busy]
        if restarts and not self.done.is_set():
            self.rewound = restarts
            self.done.set()
        return results

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.done.set()


def _wal_log_pages(db: Path) -> int:
    """The pages the WAL holds, as a passive checkpoint reports them."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def test_a_round_raising_an_unexpected_error_is_logged_and_the_next_one_rewinds_the_wal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "t.db"
    idle, writer = _wal_store(db)
    pages = RESTART_PAGES + RESTART_PAGES // 4
    for start in range(0, pages, 512):  # past RESTART_PAGES, 512 pages a commit
        writer.executemany(
            "INSERT INTO t VALUES (?, ?)", [(k, _ROW) for k in range(start, start + 512)]
        )
    caplog.set_level(logging.ERROR, logger="tunewatch.store._checkpoint")
    checkpointer = _FailsItsFirstRound(str(db))
    checkpointer.start()
    try:
        assert checkpointer.done.wait(60)
        thread = checkpointer._thread
        assert thread is not None and thread.is_alive()
        assert checkpointer.rounds >= 2
        [restart] = checkpointer.rewound
        assert restart.log_pages >= RESTART_PAGES
        assert restart.checkpointed_pages == restart.log_pages
    finally:
        checkpointer.close()
    writer.execute("INSERT INTO t VALUES (?, ?)", (pages, _ROW))  # from the WAL's start
    assert _wal_log_pages(db) < 10
    [logged] = [r for r in caplog.records if r.exc_info is not None]
    assert str(db) in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is MemoryError
    writer.close()
    idle.close()


@contextlib.contextmanager
def _files_limited_to(nbytes: int) -> Iterator[None]:
    """A write past ``nbytes`` into any file of this process fails, as on a full disk
    (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored so the write returns an error rather than
    killing the process). Process-wide while it lasts: only the rounds under test run in
    it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_checkpoint_failures_are_logged_once_until_one_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a full disk every round failed and logged its own warning: twice a second with
    no traffic, ~7,200 lines an hour, onto the disk that was full."""
    db = tmp_path / "t.db"
    idle, writer = _wal_store(db)
    for k in range(50):  # pages past the database file's end: a checkpoint must grow it
        writer.execute("INSERT INTO t VALUES (?, ?)", (k, _ROW))
    caplog.set_level(logging.DEBUG, logger="tunewatch.store._checkpoint")
    checkpointer = WalCheckpointer(str(db))
    try:
        full = os.path.getsize(db) + 100
        with _files_limited_to(full):
            for _ in range(5):
                checkpointer._round()  # the thread's rounds, run by hand
        failures = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        checkpointer._round()
        recovery = [(r.levelno, r.getMessage()) for r in caplog.records]
    finally:
        checkpointer.close()
    [(level, first), *repeats] = failures
    assert level == logging.WARNING
    assert f"WAL checkpoint of {db} failed: " in first
    assert [level for level, _ in repeats] == [logging.DEBUG] * 4
    [(level, recovered)] = recovery
    assert level == logging.INFO
    assert f"WAL checkpoint of {db} recovered after 5 failures" in recovered
    assert os.path.getsize(db) > full  # the last round copied the WAL's new pages in
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (50,)
    assert writer.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    writer.close()
    idle.close()


def _wal_store(db: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A store at ``db`` in WAL mode with table ``t``: an idle reader (the last connection
    to close would checkpoint the WAL away) and a writer that never checkpoints itself."""
    Store.open(f"sqlite:///{db}").close()  # WAL mode
    idle = sqlite3.connect(db)
    idle.execute("SELECT count(*) FROM sqlite_master").fetchall()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as every store connection has it
    writer.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    return idle, writer
