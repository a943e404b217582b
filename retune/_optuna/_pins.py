"""What a shared study pins, beyond its setup (:mod:`retune._settle`), for every worker
that joins it: a token telling this study from another of its name in another storage,
and the heartbeat interval its workers beat and judge staleness at.

A caller that must know a joiner reached the very study its first worker began (not one
of the same name in a storage of its own, which ``load_if_exists`` would have created and
tuned alone) begins the study with :func:`begin_study` and records the token where the
joiners read it; a joiner reads the study's pins with :func:`study_pins` before it runs
it, and a storage without the study, or with another token, is not the one it joins.

The heartbeat interval is pinned by the first worker that opens the study with
heartbeats (:func:`begin_study`, or :func:`~retune._optuna.open_study`), and adopted by
every other: each judged a trial stale by its own interval, and one at 2 s (a grace of
4 s) failed the trials a worker at 20 s was training.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from retune._optuna._storage import _sqlite_file, _translated, close_storage, make_storage

#: Study attribute: the token its first worker began it with (:func:`begin_study`).
TOKEN_ATTR = "study_token"
#: Study attribute: the heartbeat interval (seconds) all its workers use.
HEARTBEAT_ATTR = "heartbeat_interval"

# The studies this process began with begin_study and has not opened since: the first
# open_study of one samples with the caller's seed, as the worker creating a study does
# (another worker joining it samples with a random one).
_BEGUN_HERE: set[tuple[str, str]] = set()
_BEGUN_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class StudyPins:
    """What a study pins for its workers: ``None`` for what it does not (a study begun
    before studies recorded it, or without heartbeats)."""

    token: str | None
    heartbeat_interval: int | None


def pins_of(attrs: Mapping[str, Any]) -> StudyPins:
    """The pins among a study's user attributes ``attrs``."""
    token, interval = attrs.get(TOKEN_ATTR), attrs.get(HEARTBEAT_ATTR)
    return StudyPins(
        token=token if isinstance(token, str) else None,
        heartbeat_interval=interval if isinstance(interval, int) else None,
    )


def begin_study(
    *, storage: str, study_name: str, token: str, heartbeat_interval: int | None
) -> StudyPins:
    """Create study ``study_name`` in ``storage`` pinned with ``token`` and
    ``heartbeat_interval``, or find it (a worker resuming it): returns the pins it holds,
    those it lacked set to these. This process's first :func:`open_study` of a study it
    created so samples with its seed."""
    with _translated(study_name, "opening storage", storage):
        backend = make_storage(storage, heartbeat_interval=None)
    try:
        with _translated(study_name, "beginning the study", storage):
            exists = study_name in optuna.get_all_study_names(backend)
            study = optuna.create_study(
                storage=backend, study_name=study_name, direction="minimize", load_if_exists=True
            )
            attrs = dict(study.user_attrs)
            for key, value in ((TOKEN_ATTR, token), (HEARTBEAT_ATTR, heartbeat_interval)):
                if attrs.get(key) is None and value is not None:
                    study.set_user_attr(key, value)
                    attrs[key] = value
    finally:
        close_storage(backend)
    if not exists:
        with _BEGUN_LOCK:
            _BEGUN_HERE.add((storage, study_name))
    return pins_of(attrs)


def study_pins(*, storage: str, study_name: str) -> StudyPins | None:
    """The pins of study ``study_name`` in ``storage``; ``None`` when it holds no such
    study. Nothing is created: not the study, nor an SQLite storage's file (or its
    directory) that does not exist."""
    path = _sqlite_file(storage)
    if path is not None and not os.path.exists(path):
        return None
    with _translated(study_name, "opening storage", storage):
        backend = make_storage(storage, heartbeat_interval=None)
    try:
        with _translated(study_name, "reading its pins", storage):
            if study_name not in optuna.get_all_study_names(backend):
                return None
            study = optuna.load_study(study_name=study_name, storage=backend)
            return pins_of(study.user_attrs)
    finally:
        close_storage(backend)


def begun_here(storage: str, study_name: str) -> bool:
    """Whether this process began study ``study_name`` with :func:`begin_study` and this
    is its first open since (forgotten once asked)."""
    with _BEGUN_LOCK:
        if (storage, study_name) not in _BEGUN_HERE:
            return False
        _BEGUN_HERE.discard((storage, study_name))
        return True
