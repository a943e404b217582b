"""WAL checkpoints run in a thread of the store's own, never inside a commit: the WAL
stays bounded under steady writes although no connection checkpoints automatically."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tunewatch.store import Store
from tunewatch.store._checkpoint import WalCheckpointer


def _wal_pages(db: Path) -> int:
    size = os.path.getsize(f"{db}-wal") if os.path.exists(f"{db}-wal") else 0
    return max(0, (size - 32) // (4096 + 24))


def _write_steadily(
    db: Path,
    seconds: float,
    pause_s: float = 0.0,
    until_wal_pages: int | None = None,
    until_rows: int | None = None,
) -> int:
    """Commit 20 rows at a time for ``seconds``, or until the WAL holds
    ``until_wal_pages`` pages or ``until_rows`` rows are written (a volume, not a time:
    hosts differ twofold in speed)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as every store connection has it
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)")
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until_wal_pages is not None and _wal_pages(db) > until_wal_pages:
            break
        if until_rows is not None and n >= until_rows:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)", [(f"k{n + i:09d}", b"x" * 200) for i in range(20)]
        )
        conn.execute("COMMIT")
        n += 20
        if pause_s:
            time.sleep(pause_s)  # a group-commit writer waiting for its next group
    conn.close()
    return n


def test_store_connections_never_checkpoint_in_a_commit(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    finally:
        store.close()


def test_in_memory_stores_keep_sqlites_own_checkpoints() -> None:
    store = Store.open("sqlite://")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert store._checkpointer is None
    finally:
        store.close()


def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(f"sqlite:///{db}")  # WAL mode; its checkpointer runs every 0.5 s
    try:
        # Unchecked, ~77k of these rows fill 6 x 4096 WAL pages (the next test); twice
        # that volume, and the file (which never shrinks: its size is the high-water
        # mark) must still be under the bound.
        rows = _write_steadily(db, seconds=120.0, pause_s=0.0002, until_rows=160_000)
        assert rows >= 160_000
        assert _wal_pages(db) < 6 * 4096
    finally:
        store.close()


def test_without_a_restart_a_passive_checkpoint_alone_lets_the_wal_grow(tmp_path: Path) -> None:
    # Why the RESTART exists: under steady writes the WAL is never wholly checkpointed
    # when a writer looks, so it is never rewound.
    db = tmp_path / "t.db"
    Store.open(f"sqlite:///{db}").close()
    passive_only = WalCheckpointer(str(db), interval_s=0.2, restart_pages=10**9)
    passive_only.start()
    try:
        # The bound the test above holds with RESTARTs is passed within seconds (3 s on
        # the slower hosts seen); a WAL rewound again and again would never pass it.
        _write_steadily(db, seconds=30.0, pause_s=0.0002, until_wal_pages=6 * 4096)
        assert _wal_pages(db) > 6 * 4096
    finally:
        passive_only.close()


def test_a_round_restarts_the_wal_once_it_is_long(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store.open(f"sqlite:///{db}").close()
    idle = sqlite3.connect(db)  # the last connection to close would checkpoint the WAL away
    idle.execute("SELECT count(*) FROM sqlite_master").fetchall()
    writer = threading.Thread(target=_write_steadily, args=(db, 0.5))
    writer.start()
    writer.join()
    checkpointer = WalCheckpointer(str(db), restart_pages=100)
    try:
        results = checkpointer.checkpoint()
        assert [r.mode for r in results] == ["PASSIVE", "RESTART"]
        assert results[0].log_pages >= 100
        assert not results[1].busy
        assert results[1].checkpointed_pages == results[1].log_pages
    finally:
        checkpointer.close()
        idle.close()


def _wal_of(db: Path, pages: int) -> sqlite3.Connection:
    """Leave about ``pages`` pages in the WAL; the returned idle connection keeps it."""
    Store.open(f"sqlite:///{db}").close()
    idle = sqlite3.connect(db)
    idle.execute("SELECT count(*) FROM sqlite_master").fetchall()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    for i in range(pages):
        conn.execute("INSERT INTO t VALUES (?, ?)", (i, b"x" * 3000))  # a page a commit
    conn.close()
    return idle


def _hold_write_lock(db: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize(
    "restart_pages,waits", [(300, False), (10, True)], ids=["short-wal", "long-wal"]
)
def test_a_restart_gives_way_to_a_busy_writer_until_the_wal_is_four_times_too_long(
    tmp_path: Path, restart_pages: int, waits: bool
) -> None:
    db = tmp_path / "t.db"
    idle = _wal_of(db, pages=200)  # ~600 pages: 2x restart_pages, or 60x
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(db, 0.3, held))
    holder.start()
    held.wait(10)
    checkpointer = WalCheckpointer(str(db), restart_pages=restart_pages)
    try:
        started = time.monotonic()
        passive, restart = checkpointer.checkpoint()
        waited = time.monotonic() - started
        assert restart_pages <= passive.log_pages < 4 * 300
        assert restart.busy is not waits
        assert (waited >= 0.2) is waits  # gave up after 10 ms, or waited for the lock
    finally:
        holder.join()
        checkpointer.close()
        idle.close()


def test_a_round_before_the_file_exists_does_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "missing.db"
    assert WalCheckpointer(str(db)).checkpoint() == []
    assert not db.exists()


@pytest.mark.parametrize("kwargs", [{"interval_s": 0}, {"restart_pages": 0}])
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WalCheckpointer(str(tmp_path / "t.db"), **kwargs)  # type: ignore[arg-type]


def test_a_restart_is_not_tried_while_a_reader_holds_the_wal_back(tmp_path: Path) -> None:
    """A long read (an evaluation's window) pins the WAL, which is when it grows past
    four times `restart_pages`: each round's RESTART then took the writer lock and
    waited a second for the reader, failing, and every group commit waited with it."""
    db = tmp_path / "t.db"
    idle = _wal_of(db, pages=50)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # an old snapshot, held
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(50, 100):
        writer.execute("INSERT INTO t VALUES (?, ?)", (i, b"x" * 3000))
    checkpointer = WalCheckpointer(str(db), restart_pages=8)
    try:
        started = time.monotonic()
        results = checkpointer.checkpoint()
        waited = time.monotonic() - started
        [passive] = results  # no RESTART: it could not rewind a WAL a reader holds
        assert passive.checkpointed_pages < passive.log_pages and waited < 0.5
        reader.execute("COMMIT")  # the reader is done: the next round rewinds
        passive, restart = checkpointer.checkpoint()
        assert passive.checkpointed_pages == passive.log_pages and not restart.busy
    finally:
        checkpointer.close()
        writer.close()
        reader.close()
        idle.close()
