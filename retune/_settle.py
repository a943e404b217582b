"""What a study pins when it begins, and what a worker joining or resuming it checks: the
search space, the warm-start plan and the dataset version, the objective and the CV (the
rows' group ids included). The first worker stores them; a later one adopts the stored
space and plan, and is refused when its data, objective or CV differ."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np

from retune._errors import StudyError
from retune._optuna import StudyHandle, rebuild_sampler
from retune._runs import known_stopped, this_host
from retune.cv import CVScheme
from retune.space import SearchSpace
from retune.warmstart import WarmStartPlan

logger = logging.getLogger(__name__)

#: The study attribute naming the process that stored the warm-start plan (its host and
#: PID, as a run's record does): a worker finding the plan without a dataset version
#: completes the settle only when that process is known to be gone.
PLAN_BY_ATTR = "warmstart_plan_by"


def settle_space(handle: StudyHandle, space: SearchSpace) -> SearchSpace:
    """The space the study began with: every worker and every resumption samples it (a
    study resumed after its YAML was edited would have every trial refused by Optuna,
    which does not let a categorical's choices change)."""
    stored = handle.user_attrs.get("search_space")
    if stored is None:
        handle.set_user_attr("search_space", space.model_dump(mode="json"))
        return space
    began = SearchSpace.model_validate(stored)
    if began != space:
        logger.warning(
            "study %s: the search space changed since the study began; it goes on with the "
            "space it began with (the next job uses the new one)",
            handle.name,
        )
    return began


def cv_setup(
    cv: CVScheme, seed: int | None, *, groups: np.ndarray[Any, Any] | None = None
) -> dict[str, Any]:
    """Which folds a study's losses are averaged over: the scheme (name, splits, a time
    series' gap and test size, a nested scheme's inner one), the seed that shuffles
    them and the rows' group ids (:func:`_groups_version`, ``None`` without), both
    recorded for the study's own scheme (a ``seed``), not for a nested one's inner.
    ``max_fold_spread`` only vetoes trials; it does not change their losses."""
    settings: dict[str, Any] = {"name": cv.name, "n_splits": cv.n_splits}
    for name in ("gap", "test_size"):
        if hasattr(cv, name):
            settings[name] = getattr(cv, name)
    inner = getattr(cv, "inner", None)
    if inner is not None:
        settings["inner"] = cv_setup(inner, None)
    if seed is not None:
        settings["seed"] = seed
        settings["groups"] = None if groups is None else _groups_version(groups)
    return _as_json(settings)


def _groups_version(groups: np.ndarray[Any, Any]) -> str:
    """Content hash of the rows' group ids, as far as folds read them: each row's rank
    among the distinct ids (ids renamed in the same order, ``3`` to ``3.0``, split the
    rows alike). Pinned with the CV, since the dataset version hashes ``x`` and ``y``
    only: another grouping of the same rows makes other folds."""
    ids = np.asarray(groups).ravel()
    try:
        ranks = np.unique(ids, return_inverse=True)[1]
    except TypeError:  # ids no order sorts (None among strings): no grouped scheme splits
        ranks = np.unique(np.asarray([repr(g) for g in ids.tolist()]), return_inverse=True)[1]
    digest = hashlib.sha256(f"{len(ids)}:".encode())
    digest.update(np.ascontiguousarray(ranks, dtype=np.int64).tobytes())
    return f"sha256:{digest.hexdigest()}"


def settle_cv_pinned_before_groups(handle: StudyHandle, setup: dict[str, Any]) -> None:
    """Pin ``setup`` over a CV pinned before studies recorded group ids (an upgrade: its
    pin has no ``groups``) when the rest of it matches; otherwise leave the pin to
    :func:`settle_setup`, which refuses any difference.

    A missing ``groups`` records none, so such a study's grouping cannot be checked: a
    worker without groups is taken at its word (a grouped scheme cannot split without
    them, and an ungrouped one's folds do not read them), and so is one with groups —
    the jobs running at the upgrade resume that way, on the same rows and grouping —
    with a warning once trials ran, since a ``cv_group_column`` changed at the same
    time would go unseen this once."""
    stored = handle.user_attrs.get("cv")
    if not isinstance(stored, dict) or "groups" in stored:
        return
    if stored != {k: v for k, v in setup.items() if k != "groups"}:
        return  # another CV: settle_setup refuses it
    if setup["groups"] is not None:
        begun = [t for t in handle.trials() if t.state != "WAITING"]
        if begun:
            logger.warning(
                "study %s: its cv was pinned before studies recorded group ids; its %d "
                "trials are taken as grouped as this worker's rows are (pinned now)",
                handle.name,
                len(begun),
            )
    handle.set_user_attr("cv", setup)


def _as_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as a study attribute reads back (lists for tuples and arrays)."""
    loaded: dict[str, Any] = json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))
    return loaded


def settle_setup(handle: StudyHandle, **setup: dict[str, Any]) -> None:
    """Pin the objective and the CV: a worker that joins (or resumes) the study with
    another one would add losses that cannot be compared with the study's.

    A study is pinned by its first worker before any trial runs. One that has run
    trials but has no pin was begun before studies were pinned (an upgrade): its losses
    may come from another objective or other folds (a regression job's ``cv:
    stratified`` was time-series CV), and nothing tells, so it is refused rather than
    pinned to this worker's setup; its job has to be tuned again in a new study.
    """
    attrs = handle.user_attrs
    unpinned = [key for key in setup if attrs.get(key) is None]
    if unpinned:
        begun = [t for t in handle.trials() if t.state != "WAITING"]
        # read again after the trials: a worker that pinned the study and began a trial
        # since the first read is not mistaken for one from before pins
        attrs = handle.user_attrs
        unpinned = [key for key in setup if attrs.get(key) is None]
        if begun and unpinned:
            raise StudyError(
                f"it has {len(begun)} trials but no recorded {' or '.join(unpinned)} (it "
                "was begun before studies recorded them), so this worker's setup cannot be "
                "verified against the losses it holds; tune in a new study (queue a new "
                "job)",
                study_name=handle.name,
            )
    for key, value in setup.items():
        stored = attrs.get(key)
        if stored is None:
            handle.set_user_attr(key, value)
        elif stored != value:
            raise StudyError(
                f"it was tuned with {key} {json.dumps(stored, sort_keys=True)}, this worker "
                f"has {json.dumps(value, sort_keys=True)}; its losses would not compare with "
                "the study's (use the same config, or a new study)",
                study_name=handle.name,
            )


def settle_plan(
    handle: StudyHandle, plan: WarmStartPlan | None, version: str
) -> WarmStartPlan | None:
    """The warm-start plan every worker of the study samples by: ``plan`` for the worker
    that begins it, the stored one for a worker joining or resuming it.

    The first worker stores its plan (if any) and enqueues its configurations, then the
    dataset version: a study with a dataset version has settled its plan, so a worker
    finding one adopts what is stored, an empty plan (cost ceilings only) or none at all
    included, and its sampler is rebuilt from it. Otherwise it sampled by its own plan's
    box and frozen values, a plan the study never recorded. A stored plan without a
    dataset version is a settle under way, or one stopped before it ended, perhaps during
    the enqueue: a worker finding it completes the enqueue (configurations already in the
    study are skipped) and writes the dataset version only when it knows the storing
    process is gone (:data:`PLAN_BY_ATTR`, a process of its own host). A joiner
    enqueueing while the storer still enqueued trained the configurations twice: Optuna's
    ``skip_if_exists`` checks, then inserts.
    """
    attrs = handle.user_attrs
    stored_version = attrs.get("dataset_version")
    if stored_version is not None and stored_version != version:
        raise StudyError(
            f"it was tuned on dataset {stored_version}, this worker has {version}; "
            "use a new study name for a new training window",
            study_name=handle.name,
        )
    if "warmstart_plan" in attrs or stored_version is not None:
        stored = (
            WarmStartPlan.from_json(attrs["warmstart_plan"]) if "warmstart_plan" in attrs else None
        )
        if stored != plan:
            logger.info(
                "study %s: joining with the stored warm-start plan (%s), not this worker's",
                handle.name,
                "none" if stored is None else ", ".join(stored.strategies) or "empty",
            )
        rebuild_sampler(handle, stored)
        if stored_version is None and known_stopped(attrs.get(PLAN_BY_ATTR)):
            # the first worker stopped between the two writes, maybe during the enqueue
            _enqueue(handle, stored)  # what it enqueued is skipped
            handle.set_user_attr("dataset_version", version)
        return stored
    if plan is not None:
        handle.set_user_attr(PLAN_BY_ATTR, {"host": this_host(), "pid": os.getpid()})
        handle.set_user_attr("warmstart_plan", plan.to_json())
        _enqueue(handle, plan)
    handle.set_user_attr("dataset_version", version)
    return plan


def _enqueue(handle: StudyHandle, plan: WarmStartPlan | None) -> None:
    """Enqueue ``plan``'s configurations, but none the study already has (enqueued, or
    run): a worker completing a settle that another one was stopped in repeats it."""
    if plan is not None and plan.enqueue:
        handle.enqueue(plan.enqueue)
        logger.info(
            "study %s: enqueued %d warm-start configurations (those not in it already)",
            handle.name,
            len(plan.enqueue),
        )
