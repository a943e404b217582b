"""Reading finished studies: the history warm start learns from, fANOVA importances,
and a study's progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import OptunaError
from optuna.study import StudyDirection
from optuna.trial import TrialState

from retune._errors import WarmStartError
from retune._optuna._handles import OUTCOME, ran
from retune._optuna._storage import (
    _is_storage_error,
    _shown_storage,
    _translated,
    close_storage,
    make_storage,
)
from retune._spent import spent
from retune.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from retune.warmstart._base import History, HistoryTrial


def _open_for_reading(storage: str) -> optuna.storages.BaseStorage:
    return make_storage(storage, heartbeat_interval=None)


def load_history(
    storage: str,
    study_names: Sequence[str],
    *,
    archive: str | None = None,
    open_storage: Callable[[str], optuna.storages.BaseStorage] = _open_for_reading,
) -> History:
    """Completed trials of ``study_names`` (oldest first), ranks normalised per study;
    a maximised study's values are negated, as every history value is a loss. Each
    study's pinned objective is kept in :attr:`History.objectives`. A study missing from
    ``storage`` is read from ``archive`` (where :func:`~retune._optuna._archive.archive_study`
    moved it), when one is given.

    Every study is read through one storage, opened by ``open_storage`` (at the first
    study) and closed after the last, and the archive likewise (at the first study
    missing from ``storage``): opening one (an RDB's engine, its schema checked) costs far
    more than reading a small study through it."""
    items: list[HistoryTrial] = []
    objectives: dict[str, Mapping[str, Any] | None] = {}
    opened: dict[str, optuna.storages.BaseStorage] = {}  # one for all the studies, each

    def read(url: str, name: str) -> optuna.Study | None:
        if url not in opened:
            opened[url] = open_storage(url)
        try:
            return optuna.load_study(study_name=name, storage=opened[url])
        except KeyError:
            return None

    try:
        for name in study_names:
            try:
                study = read(storage, name)
                if study is None and archive is not None:
                    study = read(archive, name)
                if study is not None:
                    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            except Exception as exc:  # classified: re-raised unless Optuna's or the storage's
                if not isinstance(exc, OptunaError) and not _is_storage_error(exc):
                    raise
                raise WarmStartError(
                    f"cannot read history study {name!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if study is None:
                raise WarmStartError(
                    f"history study {name!r} does not exist in {_where(storage, archive)}"
                )
            if len(study.directions) != 1:
                raise WarmStartError(
                    f"history study {name!r} has {len(study.directions)} objectives; warm "
                    "start reads single-objective studies"
                )
            pinned = study.user_attrs.get("objective")
            objectives[name] = pinned if isinstance(pinned, dict) else None
            # history values are losses (lower is better): a maximised value, negated
            sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
            for t in trials:
                if t.value is not None:
                    items.append(
                        HistoryTrial(
                            study_name=name,
                            number=t.number,
                            params=dict(t.params),
                            value=sign * t.value,
                        )
                    )
    finally:
        for backend in opened.values():
            close_storage(backend)
    return History.from_trials(items, objectives=objectives)


def _where(storage: str, archive: str | None) -> str:
    """Where a missing study was looked for, for a message (passwords hidden)."""
    shown = repr(_shown_storage(storage))
    return shown if archive is None else f"{shown} nor in the archive {_shown_storage(archive)!r}"


def _distribution(decl: IntParam | FloatParam | CategoricalParam) -> BaseDistribution:
    if isinstance(decl, IntParam):
        return IntDistribution(decl.low, decl.high, log=decl.log, step=decl.step)
    if isinstance(decl, FloatParam):
        return FloatDistribution(decl.low, decl.high, log=decl.log, step=decl.step)
    return CategoricalDistribution(list(decl.choices))


#: How Optuna's fANOVA refuses trials none of its trees can split (all values equal, or all
#: parameters).
_ZERO_VARIANCE = "zero total variance"


def param_importances(history: History, space: SearchSpace, *, seed: int) -> dict[str, float]:
    """fANOVA importance shares (seeded) of the parameters every historical trial has,
    with normalised ranks as the target (comparable across studies).

    Empty when there is nothing to share out: fewer than two trials project into
    ``space``, or fANOVA finds no variance (their ranks are all equal, or no parameter
    separates them).
    """
    study = optuna.create_study(direction="minimize")
    declarations = space.declarations()
    for t in history.trials:
        projected = space.project(t.params)
        if projected is None:
            continue
        dists = {name: _distribution(declarations[name]) for name in projected}
        try:
            trial = optuna.create_trial(params=projected, distributions=dists, value=t.rank)
            study.add_trial(trial)
        except ValueError as exc:  # a projected point Optuna does not take: a bug here
            raise WarmStartError(
                f"history trial {t.number} of study {t.study_name!r} does not fit the space "
                f"{space.name!r} as projected ({projected}): {exc}"
            ) from exc
    if len(study.trials) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and _ZERO_VARIANCE in str(exc):
            return {}
        raise WarmStartError(f"importances could not be computed from history: {exc}") from exc
    return {name: float(share) for name, share in result.items()}


@dataclass(frozen=True, slots=True)
class StudyProgress:
    """How far a study got: the trials that ran (:func:`ran`, as
    :attr:`TuningResult.n_trials <retune.TuningResult>` counts them), those of them
    rejected for their serving cost (untrained: ``max_trials`` counts the others) and
    those pruned (by their outcome, as the result counts them: Optuna marks a cost
    rejection PRUNED too), complete, running and failed trials by state, the best
    value so far (lower is better), and the wall and CPU seconds its runs spent as they
    last recorded them (after each trial; as its budget counts them: wall seconds while at
    least one run worked, every run's CPU seconds)."""

    study_name: str
    n_trials: int
    n_cost_rejected: int
    n_complete: int
    n_running: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    wall_s: float = 0.0
    cpu_s: float = 0.0


def study_progress(
    storage: str, study_name: str, *, archive: str | None = None
) -> StudyProgress | None:
    """Progress of ``study_name``, or ``None`` when it does not exist (yet). A study
    missing from ``storage`` is read from ``archive``, when one is given."""
    with _translated(study_name, "reading its progress", storage):
        read = _progress_of(storage, study_name)
    if read is None and archive is not None:
        with _translated(study_name, "reading its progress from the archive", archive):
            read = _progress_of(archive, study_name)
    if read is None:
        return None
    trials, time = read
    states = [t.state for t in trials]
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    # a stale trial's WAITING retry carries the killed attempt's outcome until it runs
    ran_here = [t for t in trials if t.state != TrialState.WAITING and ran(t.user_attrs)]
    outcomes = [t.user_attrs.get(OUTCOME) for t in ran_here]
    return StudyProgress(
        study_name=study_name,
        n_trials=len(outcomes),
        n_cost_rejected=outcomes.count("cost_rejected"),
        n_complete=len(complete),
        n_running=states.count(TrialState.RUNNING),
        n_pruned=outcomes.count("pruned"),  # not the cost rejections Optuna marks PRUNED
        n_failed=states.count(TrialState.FAIL),
        best_value=min(complete) if complete else None,
        wall_s=time["wall_s"],
        cpu_s=time["cpu_s"],
    )


def _progress_of(
    storage: str, study_name: str
) -> tuple[list[optuna.trial.FrozenTrial], dict[str, float]] | None:
    """Study ``study_name``'s trials and the time its runs spent, read from ``storage``
    (opened for this read and closed after); ``None`` when it holds no such study."""
    backend = make_storage(storage, heartbeat_interval=None)
    try:  # a job's reporter reads every second: no connection is left to pile up
        study = optuna.load_study(study_name=study_name, storage=backend)
        return study.get_trials(deepcopy=False), spent(study.user_attrs)  # retune._runs
    except KeyError:
        return None
    finally:
        close_storage(backend)
