"""Archiving a finished study (DESIGN.md §6: "old studies are archived, not lost"): it is
moved from the tuning storage to an archive storage, whole, and readers find it there.

Moving is a copy, a check of the copy against the study, and the study's deletion: a
crash at any point leaves the study whole in one storage at least, and archiving it again
finishes the move (a copy cut short is made again). Each test runs on SQLite files and on
two PostgreSQL schemas of its own."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from retune import StudyError, WarmStartError, archive_study, load_history, study_progress
from retune._optuna import close_storage, make_storage
from tests.conftest import fresh_pg_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storages(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The tuning storage and the archive, both empty: two SQLite files, or two fresh
    PostgreSQL schemas (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'archive.db'}"
        return
    request.getfixturevalue("pg_available")
    with fresh_pg_schema() as storage, fresh_pg_schema() as archive:
        yield storage, archive


def _study(url: str, name: str, n_trials: int) -> None:
    """A finished study of ``n_trials`` (one of them pruned) recording its objective."""
    backend = make_storage(url, heartbeat_interval=None)
    try:
        study = optuna.create_study(study_name=name, storage=backend, direction="minimize")
        study.set_user_attr("objective", {"name": "log_loss", "params": {}})

        def objective(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0.0, 1.0)
            if trial.number == 1:
                raise optuna.TrialPruned()
            return (x - 0.3) ** 2

        study.optimize(objective, n_trials=n_trials)
    finally:
        close_storage(backend)


def _snapshot(url: str, name: str) -> tuple[object, ...] | None:
    """What a reader sees of study ``name`` in ``url``: its direction, user attributes and
    each trial's number, state, value and parameters; ``None`` when it is not there."""
    backend = make_storage(url, heartbeat_interval=None)
    try:
        if name not in optuna.get_all_study_names(backend):
            return None
        study = optuna.load_study(study_name=name, storage=backend)
        trials = tuple((t.number, t.state, t.value, t.params) for t in study.trials)
        return study.direction, study.user_attrs, trials
    finally:
        close_storage(backend)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_archiving_moves_the_study_whole_to_the_archive(storages: tuple[str, str]) -> None:
    storage, archive = storages
    _study(storage, "credit-job1-aa", 4)
    _study(storage, "credit-job2-bb", 3)
    before = _snapshot(storage, "credit-job1-aa")

    moved = archive_study(storage, archive, "credit-job1-aa")

    assert moved == 4
    assert _snapshot(storage, "credit-job1-aa") is None
    assert _snapshot(archive, "credit-job1-aa") == before
    assert _snapshot(storage, "credit-job2-bb") is not None  # only the one named
    assert _snapshot(archive, "credit-job2-bb") is None


def test_a_copy_cut_short_by_a_crash_is_made_again(storages: tuple[str, str]) -> None:
    """A crash during the copy left the archive a study of the same name holding fewer
    trials: it is replaced by a whole copy before the study leaves the storage."""
    storage, archive = storages
    _study(storage, "credit-job1-aa", 4)
    _study(archive, "credit-job1-aa", 2)  # the copy cut short
    before = _snapshot(storage, "credit-job1-aa")

    assert archive_study(storage, archive, "credit-job1-aa") == 4

    assert _snapshot(storage, "credit-job1-aa") is None
    assert _snapshot(archive, "credit-job1-aa") == before


def test_a_whole_copy_left_by_a_crash_before_the_deletion_is_kept(
    storages: tuple[str, str],
) -> None:
    storage, archive = storages
    _study(storage, "credit-job1-aa", 3)
    source, target = (make_storage(url, heartbeat_interval=None) for url in storages)
    try:  # the crash came after the copy
        optuna.copy_study(from_study_name="credit-job1-aa", from_storage=source, to_storage=target)
    finally:
        close_storage(source)
        close_storage(target)
    before = _snapshot(storage, "credit-job1-aa")

    assert archive_study(storage, archive, "credit-job1-aa") == 3

    assert _snapshot(storage, "credit-job1-aa") is None
    assert _snapshot(archive, "credit-job1-aa") == before


def test_a_study_archived_already_is_nothing_to_do(storages: tuple[str, str]) -> None:
    storage, archive = storages
    _study(storage, "credit-job1-aa", 3)
    archive_study(storage, archive, "credit-job1-aa")
    before = _snapshot(archive, "credit-job1-aa")

    assert archive_study(storage, archive, "credit-job1-aa") == 0

    assert _snapshot(archive, "credit-job1-aa") == before


def test_a_study_in_neither_storage_is_a_study_error_naming_it(
    storages: tuple[str, str],
) -> None:
    storage, archive = storages
    with pytest.raises(StudyError, match="credit-job9-zz.*neither") as info:
        archive_study(storage, archive, "credit-job9-zz")
    assert info.value.study_name == "credit-job9-zz"


def test_readers_fall_back_to_the_archive(storages: tuple[str, str]) -> None:
    storage, archive = storages
    _study(storage, "credit-job1-aa", 4)
    _study(storage, "credit-job2-bb", 3)
    names = ["credit-job1-aa", "credit-job2-bb"]
    history = load_history(storage, names)
    progress = study_progress(storage, "credit-job1-aa")
    archive_study(storage, archive, "credit-job1-aa")

    assert load_history(storage, names, archive=archive) == history
    assert study_progress(storage, "credit-job1-aa", archive=archive) == progress
    assert study_progress(storage, "credit-job2-bb", archive=archive) is not None
    assert study_progress(storage, "credit-job9-zz", archive=archive) is None
    # without the archive, the archived study is missing, as before archiving existed
    assert study_progress(storage, "credit-job1-aa") is None
    with pytest.raises(WarmStartError, match="credit-job1-aa"):
        load_history(storage, names)


def test_a_study_missing_from_both_is_a_warm_start_error_naming_both(
    tmp_path: Path,
) -> None:
    storage, archive = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(WarmStartError) as info:
        load_history(storage, ["credit-job9-zz"], archive=archive)
    assert "optuna.db" in str(info.value) and "a.db" in str(info.value)


def test_a_new_sqlite_archive_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    storage, archive = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "archive.db"
    _study(storage, "credit-job1-aa", 2)

    archive_study(storage, f"sqlite:///{archive}", "credit-job1-aa")

    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600


def test_an_archive_that_cannot_be_opened_is_a_study_error_naming_it(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    (tmp_path / "a-file").write_text("")
    archive = f"sqlite:///{tmp_path / 'a-file' / 'archive.db'}"  # under a regular file
    _study(storage, "credit-job1-aa", 2)

    with pytest.raises(StudyError, match=r"archive\.db") as info:
        archive_study(storage, archive, "credit-job1-aa")

    assert info.value.study_name == "credit-job1-aa"
    assert _snapshot(storage, "credit-job1-aa") is not None  # still in the storage


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_an_archive_that_is_the_storage_itself_deletes_nothing(tmp_path: Path, kind: str) -> None:
    """One database under two spellings (a path through a link; on PostgreSQL
    ``localhost`` for ``127.0.0.1``, which no config check can tell): the "copy" matched
    the study, which the move then deleted from both."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "shared")
    if kind == "sqlite":
        storage = f"sqlite:///{tmp_path / 'shared' / 'optuna.db'}"
        archive = f"sqlite:///{tmp_path / 'link' / 'optuna.db'}"
    else:
        storage = str(tmp_path / "shared" / "optuna.log")
        archive = str(tmp_path / "link" / "optuna.log")
    _study(storage, "s", 3)
    before = _snapshot(storage, "s")
    with pytest.raises(StudyError, match=r"is the tuning storage .* itself.*nothing was deleted"):
        archive_study(storage, archive, "s")
    assert _snapshot(storage, "s") == before is not None
    backend = make_storage(storage, heartbeat_interval=None)
    try:  # and the probe is gone
        assert optuna.get_all_study_names(backend) == ["s"]
    finally:
        close_storage(backend)


def test_a_deletion_the_caller_refuses_leaves_the_study_whole(storages: tuple[str, str]) -> None:
    """``before_delete`` raising (the caller's lease lapsed: another run may be moving the
    same study) stops the move before it deletes anything."""
    storage, archive = storages
    _study(storage, "s", 3)
    before = _snapshot(storage, "s")

    def lapsed() -> None:
        raise RuntimeError("lease lapsed")

    with pytest.raises(RuntimeError, match="lease lapsed"):
        archive_study(storage, archive, "s", before_delete=lapsed)
    assert _snapshot(storage, "s") == before is not None
