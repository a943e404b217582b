"""Temporary artefact files (``artefacts/<aa>/.tmp-*``) left by a write killed between its
write and its rename are deleted at the daemon's start once older than an hour by their
own mtime; a younger one may be another process's write in progress and is kept, as is
anything that is not a regular ``.tmp-*`` file in a shard directory.

They were kept forever: each up to the size of an upload (256 MiB by default).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.tunewatch.tmpfs import mounted_tmpfs
from tunewatch._artefact_sweep import (
    STALE_TEMPORARY_AGE_S,
    TemporariesSwept,
    sweep_temporaries,
)
from tunewatch._config import build_config
from tunewatch._daemon import Daemon

NOW = 1_900_000_000.0  # the file system's clock, injected
STALE = NOW - STALE_TEMPORARY_AGE_S - 1


def _file(path: Path, data: bytes, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _layout(root: Path, *, stale: float, fresh: float) -> dict[str, Path]:
    """One of each thing a sweep meets in an artefact directory, the stale ones with the
    mtime ``stale``: only ``stale_tmp`` is to be deleted."""
    outside = _file(root.parent / "outside" / ".tmp-target", b"not ours", stale)
    link = root / "ab" / ".tmp-link"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    os.utime(link, (stale, stale), follow_symlinks=False)
    directory = root / "ab" / ".tmp-dir"
    directory.mkdir()
    _file(directory / "inner", b"x", stale)
    os.utime(directory, (stale, stale))
    # a shard directory that is a link: its target may be anything (another disk; /tmp)
    linked_shard = root.parent / "elsewhere"
    _file(linked_shard / ".tmp-elsewhere", b"y" * 7, stale)
    (root / "cd").symlink_to(linked_shard)
    return {
        "stale_tmp": _file(root / "ab" / ".tmp-stale", b"z" * 10, stale),
        "fresh_tmp": _file(root / "ab" / ".tmp-fresh", b"w" * 5, fresh),
        "artefact": _file(root / "ab" / ("ab" + "0" * 62 + ".onnx"), b"onnx", stale),
        "link": link,
        "link_target": outside,
        "directory": directory,
        "not_a_shard": _file(root / "not-a-shard" / ".tmp-x", b"v", stale),
        "in_root": _file(root / ".tmp-in-root", b"u", stale),
        "in_linked_shard": linked_shard / ".tmp-elsewhere",
    }


def _left(paths: dict[str, Path]) -> set[str]:
    return {name for name, path in paths.items() if os.path.lexists(path)}


def test_sweep_deletes_only_stale_regular_tmp_files_in_shard_directories(tmp_path: Path) -> None:
    root = tmp_path / "artefacts"
    paths = _layout(root, stale=STALE, fresh=NOW)
    swept = sweep_temporaries(root, now=NOW)
    assert swept == TemporariesSwept(removed=1, removed_bytes=10, failed=0)
    assert _left(paths) == set(paths) - {"stale_tmp"}
    assert paths["link_target"].read_bytes() == b"not ours"
    assert (paths["directory"] / "inner").exists()


def test_sweep_keeps_a_tmp_file_younger_than_the_age(tmp_path: Path) -> None:
    root = tmp_path / "artefacts"
    young = _file(root / "ef" / ".tmp-young", b"a", NOW - STALE_TEMPORARY_AGE_S + 1)
    old = _file(root / "ef" / ".tmp-old", b"b", NOW - STALE_TEMPORARY_AGE_S)
    assert sweep_temporaries(root, now=NOW) == TemporariesSwept(
        removed=1, removed_bytes=1, failed=0
    )
    assert young.exists() and not old.exists()


def test_sweep_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    swept = sweep_temporaries(tmp_path / "never-written", now=NOW)
    assert swept == TemporariesSwept(removed=0, removed_bytes=0, failed=0)


def test_sweep_by_the_file_systems_clock_keeps_a_file_just_written(tmp_path: Path) -> None:
    root = tmp_path / "artefacts"
    now = time.time()
    fresh = _file(root / "ab" / ".tmp-fresh", b"f", now)
    stale = _file(root / "ab" / ".tmp-stale", b"s", now - 2 * STALE_TEMPORARY_AGE_S)
    assert sweep_temporaries(root).removed == 1
    assert fresh.exists() and not stale.exists()


def test_sweep_warns_of_an_undeletable_file_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "artefacts"
    kept = _file(root / "ab" / ".tmp-stale", b"k" * 3, STALE)
    with mounted_tmpfs(root / "12") as shard:
        stuck = _file(shard / ".tmp-stuck", b"s" * 4, STALE)
        subprocess.run(["mount", "-o", "remount,ro", str(shard)], check=True)
        with caplog.at_level(logging.WARNING, logger="tunewatch"):
            swept = sweep_temporaries(root, now=NOW)
        assert stuck.exists()
    assert swept == TemporariesSwept(removed=1, removed_bytes=3, failed=1)
    assert not kept.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(stuck) in warnings[0] and "EROFS" in warnings[0]


def test_daemon_start_sweeps_stale_tmp_files_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"enabled": False}}, env={})
    now = time.time()  # the files' mtimes, set: the sweep reads the file system's clock
    paths = _layout(config.artefact_dir, stale=now - 2 * STALE_TEMPORARY_AGE_S, fresh=now)
    daemon = Daemon(config, env={})
    try:
        with caplog.at_level(logging.INFO, logger="tunewatch"):
            daemon.start()
            assert daemon.temporaries_sweep is not None
            daemon.temporaries_sweep.join(30)
            assert not daemon.temporaries_sweep.is_alive()
    finally:
        daemon.close()
    assert _left(paths) == set(paths) - {"stale_tmp"}
    logged = [r.getMessage() for r in caplog.records if r.name == "tunewatch._artefact_sweep"]
    assert any(
        "1 temporary files" in m and "10 bytes" in m and str(config.artefact_dir) in m
        for m in logged
    ), logged
