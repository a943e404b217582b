"""A SQLite store this process cannot make, open or write is one line naming the file or
directory, and for a permission problem its owner, mode and the user running: it was
"store migrate: database unavailable: attempt to write a readonly database" (no path),
"unable to open database file", or a bare "[Errno 13] Permission denied: '…'" from
making the data directory or the database file.

Root passes every mode check, so the tests in this process make the paths unusable
another way (a data directory under a regular file, a directory where the database
file goes); those about modes open the store as uid 65534 (the process's effective
user for the call) when the tests run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tunewatch._cli import failure_line, main
from tunewatch._errors import StoreUnavailableError
from tunewatch.store import Store

NOBODY = 65534


def _config(tmp: Path, data_dir: Path) -> Path:
    path = tmp / "tunewatch.yaml"
    path.write_text(f"data_dir: {data_dir}\n", encoding="utf-8")
    path.chmod(0o644)
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tunewatch: error: ")
    return err[0]


def test_a_data_dir_under_a_regular_file_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").write_text("not a directory\n", encoding="utf-8")
    data_dir = tmp_path / "plain" / "data"
    assert main(["--config", str(_config(tmp_path, data_dir)), "migrate"]) == 2
    line = _error_line(capsys)
    assert f"cannot create the store's directory {data_dir}" in line
    assert f"{tmp_path / 'plain'} is not a directory" in line
    assert "[Errno" not in line


@pytest.mark.parametrize("argv", [["models"], ["tokens", "create", "bob", "--role", "viewer"]])
def test_a_store_path_that_is_a_directory_is_named_in_one_line(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "tunewatch.db").mkdir(parents=True)
    config = _config(tmp_path, data_dir)
    assert main(["--config", str(config), "--actor", "ops", *argv]) == 2
    line = _error_line(capsys)
    assert f"cannot open the store {data_dir / 'tunewatch.db'} (a directory" in line
    assert line.endswith("unable to open database file")


def test_a_store_that_cannot_be_opened_is_still_unavailable_to_the_daemon(
    tmp_path: Path,
) -> None:
    """The class is unchanged: the daemon's requests answer 503 ``store_unavailable``."""
    (tmp_path / "tunewatch.db").mkdir()
    with pytest.raises(StoreUnavailableError, match="cannot open the store") as raised:
        Store.open(f"sqlite:///{tmp_path / 'tunewatch.db'}")
    assert raised.value.code == "store_unavailable"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may reach (pytest's own is its owner's only)."""
    if os.geteuid() != 0:
        pytest.skip("opens the store as another user, which needs root")
    made = Path(tempfile.mkdtemp(prefix="tw-access-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made)


@contextmanager
def as_nobody() -> Iterator[None]:
    """This process's effective user and group uid 65534, with no supplementary groups,
    until the block ends (root's saved uid lets it change back)."""
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def _refusal(path: Path) -> str:
    """The one line the CLI prints for opening the store at ``path`` as uid 65534."""
    with as_nobody(), pytest.raises(StoreUnavailableError) as raised:
        Store.open(f"sqlite:///{path}")
    line = failure_line(raised.value)
    assert line is not None and "\n" not in line
    return line


def _made_store(data_dir: Path) -> Path:
    data_dir.mkdir()
    path = data_dir / "tunewatch.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def test_a_store_file_of_another_user_names_its_owner_mode_and_the_user(
    shared_dir: Path,
) -> None:
    data_dir = shared_dir / "data"
    store = _made_store(data_dir)
    os.chown(data_dir, NOBODY, NOBODY)  # the user's directory, root's 0600 store in it
    assert _refusal(store) == (
        f"tunewatch: error: cannot open the store {store} (owned by {_name(0)}, mode 0600) "
        f"as {_name(NOBODY)}: unable to open database file"
    )


def test_a_read_only_data_dir_names_the_directory_its_owner_mode_and_the_user(
    shared_dir: Path,
) -> None:
    data_dir = shared_dir / "data"
    store = _made_store(data_dir)
    os.chown(store, NOBODY, NOBODY)
    os.chown(data_dir, NOBODY, NOBODY)
    data_dir.chmod(0o555)  # the user's own store, where SQLite cannot make its -wal, -shm
    line = _refusal(store)
    assert line.startswith(f"tunewatch: error: cannot write the store {store}: ")
    assert f"{data_dir} (owned by {_name(NOBODY)}, mode 0555)" in line
    assert f"{_name(NOBODY)} may not make files in its directory" in line
    assert line.endswith("attempt to write a readonly database")


def test_a_root_owned_store_and_directory_name_the_store(shared_dir: Path) -> None:
    data_dir = shared_dir / "data"
    store = _made_store(data_dir)
    store.chmod(0o644)  # readable, in a directory the user may not write
    line = _refusal(store)
    assert line.startswith(
        f"tunewatch: error: cannot write the store {store} (owned by {_name(0)}, mode 0644) "
        f"as {_name(NOBODY)}"
    )
    assert line.endswith("attempt to write a readonly database")


def test_a_data_dir_of_another_user_names_it_when_the_store_cannot_be_made(
    shared_dir: Path,
) -> None:
    data_dir = shared_dir / "data"
    data_dir.mkdir()  # root's, 0755, empty
    assert _refusal(data_dir / "tunewatch.db") == (
        f"tunewatch: error: cannot create the store {data_dir / 'tunewatch.db'}: "
        f"{_name(NOBODY)} may not make files in its directory {data_dir} "
        f"(owned by {_name(0)}, mode 0755): Permission denied (EACCES)"
    )


def test_a_data_dir_that_cannot_be_made_names_the_directory_it_goes_in(
    shared_dir: Path,
) -> None:
    data_dir = shared_dir / "missing" / "data"
    assert _refusal(data_dir / "tunewatch.db") == (
        f"tunewatch: error: cannot create the store's directory {data_dir}: "
        f"{_name(NOBODY)} may not make files in {shared_dir} (owned by {_name(0)}, mode 0755): "
        "Permission denied (EACCES)"
    )
