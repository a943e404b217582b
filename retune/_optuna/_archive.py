"""Archiving a finished study: moving it, whole, from the tuning storage to an archive
storage (DESIGN.md §6: "old studies are archived, not lost"), and listing the studies a
storage holds.

A move is a copy (:func:`optuna.copy_study`), a check that the archive's copy holds what
the study holds, then the study's deletion from the storage. None of it is one
transaction, so a crash can cut it anywhere; at every point the study is whole in one
storage at least, and archiving it again finishes the move: a whole copy in the archive
is kept and the study deleted, a copy cut short is deleted and made again, and a study
gone from the storage and in the archive is done. The readers
(:func:`~retune._optuna._reads.load_history`, :func:`~retune._optuna._reads.study_progress`)
read a study missing from the storage from the archive.

An SQLite archive is made readable by its owner only, as the storage is
(:func:`~retune._optuna._storage.make_storage`): it holds the same trial parameters and
scores."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from optuna.study import StudyDirection

from retune._errors import StudyError
from retune._optuna._storage import _shown_storage, _translated, close_storage, make_storage

logger = logging.getLogger(__name__)

#: The name a study made to tell the archive from the storage begins with.
_PROBE_PREFIX = "tunewatch-archive-probe-"


def study_names(storage: str) -> frozenset[str]:
    """The names of every study in ``storage`` (other stores' too, where it is shared)."""
    with _translated("*", "listing the studies", storage):
        backend = make_storage(storage, heartbeat_interval=None)
        try:
            return frozenset(optuna.get_all_study_names(backend))
        finally:
            close_storage(backend)


def archive_study(
    storage: str, archive: str, name: str, *, before_delete: Callable[[], None] | None = None
) -> int:
    """Move study ``name`` from ``storage`` to ``archive`` under the same name; the number
    of its trials moved (0 when it was in the archive only: moved before).

    ``archive`` must be another database than ``storage``, however the two URLs are
    spelt (a path through a link, ``localhost`` for ``127.0.0.1``): a study made in the
    archive for the purpose must not appear in the storage, or nothing is deleted (the
    "copy" of a study into its own tables matched it, and the move deleted it).
    ``before_delete`` is called before each deletion and may raise to prevent it (the
    caller's lease lapsed: another run may be moving the same study).

    Raises :class:`~retune.StudyError` (a
    :class:`~retune.StudyStorageUnavailableError` for a storage out of reach) naming the
    study, with the storage's or the archive's URL (password hidden) in the message, when
    either cannot be read or written, when the study is in neither, or when the copy made
    does not hold what the study holds (the study is then left in ``storage``)."""
    source = _opened(storage, name)
    try:
        target = _opened(archive, name)
        try:
            _check_distinct(source, storage, target, archive, name)
            return _move(source, storage, target, archive, name, before_delete or _nothing)
        finally:
            close_storage(target)
    finally:
        close_storage(source)


def _nothing() -> None:
    return None


def _check_distinct(
    source: optuna.storages.BaseStorage,
    storage: str,
    target: optuna.storages.BaseStorage,
    archive: str,
    name: str,
) -> None:
    """Raise :class:`~retune.StudyError` when ``archive`` is ``storage`` itself: a probe
    study made in the archive (and deleted after) is found in the storage."""
    probe = f"{_PROBE_PREFIX}{uuid.uuid4().hex}"
    with _translated(name, "checking the archive is not the storage", archive):
        target.create_new_study([StudyDirection.MINIMIZE], probe)
    try:
        with _translated(name, "checking the archive is not the storage", storage):
            try:
                source.get_study_id_from_name(probe)
            except KeyError:
                return
    finally:
        with _translated(name, "deleting the archive's probe study", archive):
            target.delete_study(target.get_study_id_from_name(probe))
    raise StudyError(
        f"cannot be archived: the archive {_shown_storage(archive)!r} is the tuning "
        f"storage {_shown_storage(storage)!r} itself (another spelling of one database); "
        "nothing was deleted: name another database or file as the archive",
        study_name=name,
    )


def _opened(url: str, name: str) -> optuna.storages.BaseStorage:
    """``url`` opened for archiving study ``name`` (errors translated, naming ``url``)."""
    with _translated(name, "opening a storage to archive it", url):
        return make_storage(url, heartbeat_interval=None)


def _move(
    source: optuna.storages.BaseStorage,
    storage: str,
    target: optuna.storages.BaseStorage,
    archive: str,
    name: str,
    before_delete: Callable[[], None],
) -> int:
    with _translated(name, "reading it to archive it", storage):
        original = _contents(source, name)
    with _translated(name, "reading its archived copy", archive):
        copied = _contents(target, name)
    if original is None:
        if copied is None:
            raise StudyError(
                "cannot be archived: it is in neither the storage nor the archive",
                study_name=name,
            )
        return 0  # moved before: nothing left to do
    if copied != original:
        if copied is not None:  # a copy cut short (a crash): made again, whole
            logger.info("study %s: its archived copy is incomplete; copying it again", name)
            before_delete()  # outside the translation: its error is the caller's own
        with _translated(name, "copying it into the archive", archive):
            if copied is not None:
                optuna.delete_study(study_name=name, storage=target)
            optuna.copy_study(from_study_name=name, from_storage=source, to_storage=target)
            copied = _contents(target, name)
        if copied != original:
            raise StudyError(
                "its archived copy does not hold what the study holds (was it written to "
                "while it was copied?); it stays in the storage",
                study_name=name,
            )
    before_delete()
    with _translated(name, "deleting it from the storage once archived", storage):
        optuna.delete_study(study_name=name, storage=source)
    n_trials = len(original[2])
    logger.info("study %s: archived (%d trials)", name, n_trials)
    return n_trials


def _contents(backend: optuna.storages.BaseStorage, name: str) -> tuple[Any, ...] | None:
    """What a copy of study ``name`` must hold: its directions, its user attributes, and
    each trial's number, state, values and parameters; ``None`` when ``backend`` holds no
    such study."""
    try:
        study_id = backend.get_study_id_from_name(name)
    except KeyError:
        return None
    trials = backend.get_all_trials(study_id, deepcopy=False)
    return (
        tuple(backend.get_study_directions(study_id)),
        backend.get_study_user_attrs(study_id),
        tuple((t.number, t.state, t.values, t.params) for t in trials),
    )
