"""A SQLite store whose file is removed or replaced while it is open refuses to commit.

SQLite keeps writing to the file it opened: with the data directory removed
(``rm -rf``) or another database renamed over ``tunewatch.db``, every scoring request and
label was acknowledged (200, 201), readiness said ok and nothing was logged, while the
records went into an unlinked file (``/proc/<pid>/fd``: ``tunewatch.db (deleted)``) lost
at the next start. Each commit now checks that the path still names the file the store
opened: if not, it rolls back and fails with ``StoreUnavailableError`` (503
``store_unavailable``), logged as an error once, not once per request.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch._errors import StoreUnavailableError
from tunewatch.store import LabelItem, Store

REPLACED = "was removed or replaced since it was opened; restart the daemon"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{data_dir}/tunewatch.db")
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


def _record(store: Store, rid: str) -> list[bool]:
    return store.write_records([request_record(rid)], [output_record(rid)])


def test_writes_after_the_data_directory_is_removed_fail_as_unavailable(
    store: Store, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _record(store, "before") == [True]
    shutil.rmtree(data_dir)

    with pytest.raises(StoreUnavailableError) as recording:
        _record(store, "after")
    assert f"store file {data_dir / 'tunewatch.db'} {REPLACED}" in str(recording.value)
    with pytest.raises(StoreUnavailableError, match=REPLACED):
        store.add_labels("m", [LabelItem(request_id="before", value=1.0)])
    with pytest.raises(StoreUnavailableError, match=REPLACED):
        store.ping()  # readiness: the daemon is not ready
    assert not data_dir.exists()

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and REPLACED in r.message]
    assert len(errors) == 1, [r.message for r in caplog.records]


def test_writes_after_another_database_is_renamed_over_the_file_fail_as_unavailable(
    store: Store, data_dir: Path, tmp_path: Path
) -> None:
    assert _record(store, "before") == [True]
    other = tmp_path / "other.db"
    with Store.open(f"sqlite:///{other}") as replacement:
        replacement.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    os.replace(other, data_dir / "tunewatch.db")

    with pytest.raises(StoreUnavailableError, match=REPLACED):
        _record(store, "after")
    with pytest.raises(StoreUnavailableError, match=REPLACED):
        store.add_labels("m", [LabelItem(request_id="before", value=1.0)])


def test_a_file_moved_back_takes_writes_again(
    store: Store, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = data_dir / "tunewatch.db"
    aside = tmp_path / "aside.db"
    assert _record(store, "before") == [True]
    for outage in ("first", "second"):
        path.rename(aside)
        with pytest.raises(StoreUnavailableError, match=REPLACED):
            _record(store, f"{outage}-during")
        aside.rename(path)
        assert _record(store, f"{outage}-after") == [True]

    assert store.request_ids("m") == {"before", "first-after", "second-after"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and REPLACED in r.message]
    assert len(errors) == 2, [r.message for r in caplog.records]  # once per outage
