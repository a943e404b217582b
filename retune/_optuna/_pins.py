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

The sampler seed is pinned by the first worker that opens the study (:func:`pin_sampler_seed`),
with the rule deriving each trial's randomness from it and the trial's number
(:data:`~retune._optuna._sampler.SAMPLER_SEED_RULE`): every worker, and every resumption,
samples trial ``n`` alike, and a report can show how any trial can be replayed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from retune._errors import StudyError
from retune._optuna._sampler import SAMPLER_SEED_RULE
from retune._optuna._storage import _sqlite_file, _translated, close_storage, make_storage

logger = logging.getLogger(__name__)

#: Study attribute: the token its first worker began it with (:func:`begin_study`).
TOKEN_ATTR = "study_token"
#: Study attribute: the heartbeat interval (seconds) all its workers use.
HEARTBEAT_ATTR = "heartbeat_interval"
#: Study attribute: the seed its trials sample with, and the rule deriving each trial's
#: randomness from it (``{"format_version", "seed", "rule"}``: :func:`pin_sampler_seed`).
SAMPLER_SEED_ATTR = "sampler_seed"
SAMPLER_SEED_FORMAT_VERSION = 1


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
    those it lacked set to these."""
    with _translated(study_name, "opening storage", storage):
        backend = make_storage(storage, heartbeat_interval=None)
    try:
        with _translated(study_name, "beginning the study", storage):
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


def pin_sampler_seed(study: optuna.Study, seed: int) -> int:
    """The seed ``study``'s trials sample with: the one it pins, pinned now to ``seed``
    (with :data:`~retune._optuna._sampler.SAMPLER_SEED_RULE`) if it pins none. A worker
    given another adopts the study's, and says so. Raises :class:`StudyError` for a pin of
    a newer format, whose rule this version cannot follow."""
    name = study.study_name
    with _translated(name, "pinning its sampler seed"):
        pinned = study.user_attrs.get(SAMPLER_SEED_ATTR)
        if pinned is None:
            study.set_user_attr(
                SAMPLER_SEED_ATTR,
                {
                    "format_version": SAMPLER_SEED_FORMAT_VERSION,
                    "seed": seed,
                    "rule": SAMPLER_SEED_RULE,
                },
            )
            return seed
    version = pinned.get("format_version") if isinstance(pinned, dict) else None
    study_seed = pinned.get("seed") if isinstance(pinned, dict) else None
    if (
        not isinstance(version, int)
        or version > SAMPLER_SEED_FORMAT_VERSION
        or not isinstance(study_seed, int)
    ):
        raise StudyError(
            f"`{SAMPLER_SEED_ATTR}` must have a format_version <= "
            f"{SAMPLER_SEED_FORMAT_VERSION}, got {version!r}: the study was begun by a newer "
            "retune, whose trials this one would sample otherwise; resume it with that one",
            study_name=name,
        )
    if study_seed != seed:
        logger.info(
            "study %s: sampler seed %d, pinned when the study began; this worker was given "
            "%d, and samples with the study's",
            name,
            study_seed,
            seed,
        )
    return study_seed
