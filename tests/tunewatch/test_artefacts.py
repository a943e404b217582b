"""The artefact directory keeps what it was given: content checked against its name,
every rename made durable, nothing left behind by a failed write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import NotFoundError, StoreError
from tunewatch.store import Store

DATA = b"onnx-bytes" * 1000


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_put_replaces_a_damaged_file_under_the_hash_s_name(tmp_path: Path, damage: str) -> None:
    """A file of the hash's name was taken as stored without reading it: a partial copy
    of the data directory was never repaired by registering the same bytes again."""
    store = ArtefactStore(tmp_path)
    sha = store.put(DATA)
    damaged = DATA[:100] if damage == "truncated" else b"X" + DATA[1:]
    store.path(sha).write_bytes(damaged)
    with pytest.raises(StoreError, match="corrupt"):
        store.get(sha)
    assert store.put(DATA) == sha
    assert store.get(sha) == DATA


def test_put_leaves_an_intact_file_in_place(tmp_path: Path) -> None:
    store = ArtefactStore(tmp_path)
    sha = store.put(DATA)
    inode = store.path(sha).stat().st_ino
    assert store.put(DATA) == sha
    assert store.path(sha).stat().st_ino == inode


def test_put_makes_the_rename_and_a_new_shard_directory_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory was never fsynced: after a power loss the committed version row
    could name a file whose directory entry was lost."""
    synced: list[str] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = ArtefactStore(tmp_path / "artefacts")
    sha = store.put(DATA)
    shard = store.path(sha).parent
    assert str(shard) in synced  # the rename into the shard
    assert str(store.root) in synced  # the new shard in the root
    assert str(store.root.parent) in synced  # the new root in its parent
    synced.clear()
    other = b"x" * 10
    while hashlib.sha256(other).hexdigest()[:2] != sha[:2]:  # the same shard
        other += b"x"
    store.put(other)
    assert str(shard) in synced and str(store.root) not in synced


def test_a_failed_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = ArtefactStore(tmp_path)
    target = store.path(hashlib.sha256(DATA).hexdigest())
    (target / "in-the-way").mkdir(parents=True)  # a directory where the file belongs
    with pytest.raises(StoreError, match="cannot write artefact"):
        store.put(DATA)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_a_sqlite_store_keeps_no_second_copy_of_an_artefact(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A SQLite store lives on one host, beside its data directory: a copy of every
    artefact in it would only double the disk used, and a missing file is not looked up
    there."""
    store = Store.open(sqlite_url)
    try:
        a = ArtefactStore(tmp_path / "artefacts", store=store)
        sha = a.put(DATA)
        assert a.get(sha) == DATA
        assert store.get_artefact(sha) is None
        a.path(sha).unlink()
        with pytest.raises(NotFoundError) as err:
            a.get(sha)
        assert err.value.message == f"artefact {sha} is missing from {a.root}"
    finally:
        store.close()
