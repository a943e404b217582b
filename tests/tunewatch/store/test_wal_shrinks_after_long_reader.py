"""A WAL a long reader grew (a `tunewatch backup` under load) is cut back to the store's
limit once it is rewound: SQLite reuses the file but never shrinks it, and it kept its
size (111 MiB, 24 MiB before the backup) until the daemon stopped."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from tunewatch.store import Store
from tunewatch.store._checkpoint import WAL_LIMIT_PAGES

_BLOB = 1 << 20


def _wal_bytes(db: Path) -> int:
    return os.path.getsize(f"{db}-wal")


def test_a_wal_a_long_reader_grew_shrinks_to_the_limit_at_the_first_write_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    store = Store.open(f"sqlite:///{db}")
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.close()  # its thread stops: its rounds are run by hand below
        page_size = reader.execute("PRAGMA page_size").fetchone()[0]
        limit = WAL_LIMIT_PAGES * page_size
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM artefacts").fetchone()  # a snapshot, held
        blobs: list[bytes] = []
        while _wal_bytes(db) < 2 * limit:  # 1 MiB artefacts, each its own row and commit
            blobs.append(len(blobs).to_bytes(8, "big") * (_BLOB // 8))
            assert store.put_artefact(blobs[-1], ".bin")
            [held] = checkpointer.checkpoint()  # the reader holds the WAL: no RESTART
            assert held.checkpointed_pages < held.log_pages
        grown = _wal_bytes(db)
        reader.execute("COMMIT")  # the long read ends
        passive, restart = checkpointer.checkpoint()
        assert passive.checkpointed_pages == passive.log_pages
        assert not restart.busy and restart.checkpointed_pages == restart.log_pages
        assert _wal_bytes(db) == grown  # a RESTART rewinds the WAL, it does not cut it
        store.put_artefact(b"one more write", ".bin")  # writes the WAL from its start
        assert _wal_bytes(db) <= limit < grown / 2
        kept = {store.get_artefact(hashlib.sha256(b).hexdigest(), ".bin") for b in blobs}
        assert kept == set(blobs)
    finally:
        reader.close()
        store.close()
