"""``tunewatch backup DIR`` leaves an audit trace in both stores: a ``backup`` entry in the
source, naming the head it copied, and a chained ``backup_snapshot`` entry in the copy.

Without them a store restored from a backup verified ``audit chain intact`` and ended
where the backup was taken: a token revoked after it answered again, and nothing in
either log said a backup had been taken, so an auditor could not tell the restored log
from one in which the revocation never happened."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._types import AuditEntry


def _config(path: Path, data_dir: Path, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({"data_dir": str(data_dir), **extra}))
    return path


def _log(database: Path) -> list[AuditEntry]:
    """The audit log of the SQLite store ``database``, newest first."""
    with Store(f"sqlite:///{database}") as store:
        assert store.verify_audit() is None
        return store.audit_log(limit=1000)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Path]:
    """A config whose store holds one audit entry: alice created the token ``mallory``."""
    config = _config(tmp_path / "tunewatch.yaml", tmp_path / "data")
    assert main(["--config", str(config), "migrate"]) == 0
    created = ["tokens", "create", "mallory", "--role", "operator"]
    assert main(["--config", str(config), "--actor", "alice", *created]) == 0
    yield config


def test_backup_appends_a_backup_entry_to_the_source_naming_the_head_it_copied(
    live: Path, tmp_path: Path
) -> None:
    source = tmp_path / "data" / "tunewatch.db"
    [created] = _log(source)
    before = datetime.now().astimezone()
    assert main(["--config", str(live), "--actor", "alice", "backup", str(tmp_path / "bk")]) == 0
    entry, previous = _log(source)
    assert previous == created
    assert (entry.action, entry.actor, entry.target) == ("backup", "alice", str(tmp_path / "bk"))
    assert entry.details["head_id"] == created.id
    assert entry.details["head_hash"] == created.hash
    taken_at = datetime.fromisoformat(entry.details["taken_at"])
    assert before <= taken_at <= entry.at
    # the copy's own entry, by its hash: the two logs name each other
    snapshot = _log(tmp_path / "bk" / "tunewatch.db")[0]
    assert entry.details["snapshot_hash"] == snapshot.hash


def test_restored_store_ends_at_a_chained_backup_snapshot_entry_after_a_later_revoke(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "data" / "tunewatch.db"
    [created] = _log(source)
    assert main(["--config", str(live), "--actor", "alice", "backup", str(tmp_path / "bk")]) == 0
    revoke = ["tokens", "revoke", "mallory", "--reason", "left the company"]
    assert main(["--config", str(live), "--actor", "alice", *revoke]) == 0
    restored = _config(tmp_path / "restored.yaml", tmp_path / "bk")
    capsys.readouterr()
    assert main(["--config", str(restored), "audit"]) == 0
    out = capsys.readouterr().out
    assert "audit chain intact" in out, out
    snapshot, copied = _log(tmp_path / "bk" / "tunewatch.db")
    assert copied == created
    assert (snapshot.action, snapshot.actor) == ("backup_snapshot", "alice")
    assert snapshot.target == str(tmp_path / "bk")
    assert snapshot.prev_hash == created.hash  # chained onto the head it copied
    assert snapshot.details["store"] == str(source)
    assert snapshot.details["head_id"] == created.id
    assert snapshot.details["head_hash"] == created.hash
    taken_at = datetime.fromisoformat(snapshot.details["taken_at"])
    assert taken_at <= snapshot.at
    listed = [line for line in out.splitlines() if line.lstrip()[:1].isdigit()]
    assert "backup_snapshot" in listed[-1], out  # the last entry `audit` lists
    # the source goes on: the revoke follows its backup entry
    revoked, backed_up, _ = _log(source)[:3]
    assert (backed_up.action, revoked.action) == ("backup", "revoke_token")
    assert backed_up.details["taken_at"] == snapshot.details["taken_at"]


def test_backup_copy_holds_no_sidecar_and_passes_integrity_check(
    live: Path, tmp_path: Path
) -> None:
    assert main(["--config", str(live), "--actor", "alice", "backup", str(tmp_path / "bk")]) == 0
    names = sorted(p.name for p in (tmp_path / "bk").iterdir())
    assert names == ["tunewatch.db"], names
    copy = tmp_path / "bk" / "tunewatch.db"
    assert copy.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True) as c:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_backup_that_fails_part_way_leaves_no_backup_entry_in_the_source(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "data" / "tunewatch.db"
    before = _log(source)
    (tmp_path / "data" / "optuna.db").write_text("not a database")
    capsys.readouterr()
    assert main(["--config", str(live), "--actor", "alice", "backup", str(tmp_path / "bk")]) == 2
    assert "the partial backup was removed" in capsys.readouterr().err
    assert _log(source) == before
    assert not (tmp_path / "bk").exists()


def test_backup_the_source_cannot_record_is_removed_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup on disk that the source's log does not name is one an auditor cannot
    account for: when the ``backup`` entry cannot be appended (the store locked past
    ``store.lock_timeout_s``), the backup is removed and the command fails."""
    config = _config(tmp_path / "tunewatch.yaml", tmp_path / "data", store={"lock_timeout_s": 0.05})
    assert main(["--config", str(config), "migrate"]) == 0
    source = tmp_path / "data" / "tunewatch.db"
    before = _log(source)
    writer = sqlite3.connect(source, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the write lock, as a long write holds it
        capsys.readouterr()
        assert (
            main(["--config", str(config), "--actor", "alice", "backup", str(tmp_path / "bk")]) == 2
        )
        err = capsys.readouterr().err
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert err.startswith("tunewatch: error: ") and err.count("\n") == 1, err
    assert "audit log" in err and str(source) in err and "the backup was removed" in err, err
    assert not (tmp_path / "bk").exists()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    assert _log(source) == before
