"""An SQLite tuning storage this process cannot write or open is a :class:`StudyError`
naming the file and SQLite's reason, not an outage to wait out (waiting does not change a
file's owner or a missing directory, and a job queued again retried it for minutes). An
``optuna.db`` another user left read-only failed every job with Optuna's "invalid data in
the commit, e.g. exceeding max length", naming neither the file nor "attempt to write a
readonly database" (only in the exception's chain). A file that is no database is a plain
:class:`StudyError` too. A new storage file is readable by
its owner only: it holds trial parameters, fold scores and data hashes, and was 0644.

Run as root, where file modes bind nobody: the read-only file is SQLite's own read-only
open (a ``?mode=ro`` URI filename), the unopenable one a path under a regular file."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from retune import StudyError, study_progress
from retune._errors import StudyStorageUnavailableError
from retune._optuna._pins import begin_study


def _begin(storage: str, study_name: str = "s") -> None:
    begin_study(storage=storage, study_name=study_name, token="t", heartbeat_interval=2)


def test_a_read_only_sqlite_storage_is_a_study_error_naming_its_file_and_sqlites_reason(
    tmp_path: Path,
) -> None:
    path = tmp_path / "optuna.db"
    _begin(f"sqlite:///{path}")  # an existing storage, then opened read-only
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"

    with pytest.raises(StudyError) as info:
        _begin(read_only, "another")  # its INSERT is refused, as a 0644 root file's was

    assert not isinstance(info.value, StudyStorageUnavailableError)
    assert info.value.study_name == "another"
    message = str(info.value)
    assert "beginning the study failed: the storage cannot be opened or written" in message
    assert "attempt to write a readonly database" in message
    assert str(path) in message
    assert "invalid data" not in message
    assert study_progress(read_only, "s") is not None  # reading it works as before


def test_an_sqlite_storage_that_cannot_be_opened_is_a_study_error_naming_its_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").write_text("")  # the storage's directory is a regular file
    path = tmp_path / "data" / "optuna.db"

    with pytest.raises(StudyError) as info:
        _begin(f"sqlite:///{path}")
    assert not isinstance(info.value, StudyStorageUnavailableError)
    message = str(info.value)
    assert "opening storage failed: the storage cannot be opened or written" in message
    assert "unable to open database file" in message
    assert str(path) in message

    with pytest.raises(StudyError, match="reading its progress failed"):
        study_progress(f"sqlite:///{path}", "s")


def test_an_sqlite_file_that_is_no_database_stays_a_study_error(tmp_path: Path) -> None:
    """SQLite's other errors are the file's content, not its reach: waiting mends none."""
    path = tmp_path / "optuna.db"
    path.write_bytes(b"not a database " * 100)

    with pytest.raises(StudyError) as info:
        _begin(f"sqlite:///{path}")

    assert not isinstance(info.value, StudyStorageUnavailableError)
    assert "file is not a database" in str(info.value)


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_an_unreachable_postgresql_storage_is_named_without_its_password() -> None:
    storage = f"postgresql+psycopg://tw:pw-secret@127.0.0.1:{_closed_port()}/tuning"

    with pytest.raises(StudyStorageUnavailableError) as info:
        _begin(storage)

    message = str(info.value)
    assert "Connection refused" in message
    assert storage.replace("pw-secret", "***") in message
    assert "pw-secret" not in message


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


@pytest.mark.usefixtures("umask_022")
def test_a_new_sqlite_storage_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "optuna.db"

    _begin(f"sqlite:///{path}")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_an_existing_sqlite_storage_file_keeps_its_mode(tmp_path: Path) -> None:
    """An operator's choice (a group reading the storage) is left as it is."""
    path = tmp_path / "optuna.db"
    _begin(f"sqlite:///{path}")
    path.chmod(0o640)

    _begin(f"sqlite:///{path}", "another")

    assert stat.S_IMODE(path.stat().st_mode) == 0o640
