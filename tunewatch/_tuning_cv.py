"""The CV of a re-tuning job: the scheme ``tuning.cv`` names, and nested CV's estimate of
the tuning itself (the job tunes again on each outer training part)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune import StudyError, TuningResult
from retune.cv import (
    CVScheme,
    GroupKFoldCV,
    KFoldCV,
    NestedCV,
    NestedEstimate,
    NestedSplitError,
    StratifiedKFoldCV,
    TimeSeriesCV,
    nested_estimate,
)
from retune.warmstart import CostCeiling, WarmStartPlan
from tunewatch._config import TuningJobConfig
from tunewatch._errors import TuningError
from tunewatch._serving_cost import with_ceiling

#: Outer folds of ``cv: nested`` when ``cv_outer_folds`` is not set.
DEFAULT_OUTER_FOLDS = 3


def cv_scheme(tj: TuningJobConfig, task: str) -> CVScheme:
    """The CV ``tuning.cv`` names for the task: ``stratified`` is stratified k-fold for a
    classifier and shuffled k-fold for a regressor (no classes to stratify by);
    ``time_series`` leaves ``cv_gap`` rows out between training and test rows;
    ``grouped`` is group k-fold over the ``cv_group_column`` feature; ``nested`` scores
    trials on ``cv_folds`` inner folds and the tuning on ``cv_outer_folds`` outer ones,
    both grouped with ``cv_group_column`` set, else as ``stratified``."""
    spread = tj.max_fold_spread
    outer_folds = tj.cv_outer_folds or DEFAULT_OUTER_FOLDS
    if tj.cv == "time_series":
        return TimeSeriesCV(n_splits=tj.cv_folds, gap=tj.cv_gap, max_fold_spread=spread)
    if tj.cv_group_column is not None:  # cv: grouped, or nested over groups
        inner: CVScheme = GroupKFoldCV(n_splits=tj.cv_folds, max_fold_spread=spread)
        outer: CVScheme = GroupKFoldCV(n_splits=outer_folds)
    elif task == "regression":
        inner = KFoldCV(n_splits=tj.cv_folds, max_fold_spread=spread)
        outer = KFoldCV(n_splits=outer_folds)
    else:
        inner = StratifiedKFoldCV(n_splits=tj.cv_folds, max_fold_spread=spread)
        outer = StratifiedKFoldCV(n_splits=outer_folds)
    return NestedCV(outer=outer, inner=inner) if tj.cv == "nested" else inner


def cv_groups(
    tj: TuningJobConfig,
    feature_names: Sequence[str],
    x: np.ndarray,
    *,
    n_inherited: int = 0,
    parent_version: int | None = None,
) -> np.ndarray | None:
    """Each window row's group id for grouped CV: its ``cv_group_column`` feature (the
    config is checked against the model's features when it registers; checked again
    here for a model registered before the setting). ``None`` without a group column.

    ``n_inherited``: how many of ``x``'s first rows were taken from the reference of
    version ``parent_version`` (``tuning.include_reference``), the rest being labelled
    traffic; a refusal for missing ids counts each part's apart (:func:`_missing_ids`)."""
    column = tj.cv_group_column
    if column is None:
        return None
    if column not in feature_names:
        raise TuningError(
            f"tuning.cv_group_column: the group column must be a feature of the model, got "
            f"{column!r}; its features are {', '.join(feature_names)}"
        )
    groups = x[:, list(feature_names).index(column)]
    missing = np.isnan(groups)
    if missing.any():
        raise TuningError(_missing_ids(column, missing, n_inherited, parent_version))
    return groups


def _missing_ids(
    column: str, missing: np.ndarray, n_inherited: int, parent_version: int | None
) -> str:
    """The refusal of a window whose ``missing`` rows have no group id, the rows taken
    from the reference (the first ``n_inherited``) counted apart from the traffic's: a
    job whose missing ids were all in its champion's reference said only "missing in 300
    of the window's 500 rows", and the traffic the operator searched had none missing."""
    said = (
        f"tuning.cv_group_column: the group column {column} is missing (NaN) in "
        f"{int(missing.sum())} of the window's {missing.size} rows"
    )
    if not n_inherited:
        return f"{said}; every row needs a group id"
    n_traffic = missing.size - n_inherited
    in_reference = int(missing[:n_inherited].sum())
    in_traffic = int(missing[n_inherited:].sum())
    source = f"version {parent_version}'s" if parent_version is not None else "the champion's"
    said += (
        f": {_count(in_reference)} of the {n_inherited} rows taken from {source} reference "
        f"(tuning.include_reference) and {_count(in_traffic)} of the {n_traffic} labelled "
        "traffic rows; every row needs a group id"
    )
    if in_traffic:
        return said
    return (
        f"{said}. Only the reference rows lack one: set tuning.include_reference: false "
        f"to train on the traffic alone, or register a version whose reference holds "
        f"{column}"
    )


def _count(n: int) -> str:
    return str(n) if n else "none"


def check_nested(
    cv: NestedCV,
    tj: TuningJobConfig,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    objective: Objective | None = None,
) -> None:
    """Refuse, before any tuning, a window ``cv: nested`` cannot use: each outer training
    part is tuned again with the inner scheme, and one it cannot split (too few groups, a
    class rarer than the folds) failed the job only after the main study's whole budget.
    With the job's ``objective``, each outer part is checked as a window is before a
    study (:meth:`retune.cv.NestedCV.check`): an inner training fold of one class (a
    customer's rows all of one class), or an outer test part the objective cannot score
    (ROC AUC of one class), failed the job after the main study and the outer studies
    before it. Raises a :class:`TuningError` naming the part and the setting to change."""
    outer_folds = cv.outer.n_splits
    try:
        cv.check(x, y, groups=groups, seed=tj.seed, objective=objective)
    except NestedSplitError as exc:
        if exc.outer_part is None:
            raise TuningError(
                f"tuning.cv_outer_folds: `cv: nested`: {exc}; lower tuning.cv_outer_folds "
                f"({outer_folds})"
            ) from exc
        if exc.test_part:
            raise TuningError(
                f"tuning.cv_outer_folds: `cv: nested` scores the tuning on each of its "
                f"{outer_folds} outer test parts, and {exc}; lower tuning.cv_outer_folds "
                f"({outer_folds}), which makes each outer test part larger, or choose an "
                "objective that scores a part of one class"
            ) from exc
        raise TuningError(
            f"tuning.cv_folds: `cv: nested` tunes again on each of its {outer_folds} outer "
            f"training parts, and {exc}; lower tuning.cv_folds ({tj.cv_folds}) or raise "
            f"tuning.cv_outer_folds ({outer_folds}), which makes each outer training part "
            "larger"
        ) from exc


def tuned_estimate(
    tune: Callable[..., TuningResult],
    study: str,
    x: np.ndarray,
    y: np.ndarray,
    cv: NestedCV,
    objective: Objective,
    seed: int,
    groups: np.ndarray | None,
    plan: WarmStartPlan | None,
    on_outer: Callable[[tuple[TuningResult, ...]], None] | None = None,
) -> TunedEstimate:
    """Tune again, as the job did (``tune``: :func:`retune.run_study` with the job's space
    and budget), on each outer training part — study ``<study>-outer<k>``, which a resumed
    or joining worker continues — and score the configuration chosen there on the outer
    test part, which the tuning never saw.

    The outer studies run ``plan``, not the job's warm-start plan: that one enqueues and
    boxes around configurations earlier jobs chose on rows that may reappear in an outer
    test part (the champion's reference, overlapping traffic), which would make the test
    part seen. ``plan`` is the job's serving-cost ceilings only (:func:`outer_plan`).

    The outer studies' results come with the estimate: what they cost is the job's too.
    ``on_outer`` is called after each outer study with the results of those finished so
    far."""
    outer_fold = itertools.count()
    studies: list[TuningResult] = []

    def select(
        x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray | None
    ) -> dict[str, Any]:
        name = f"{study}-outer{next(outer_fold)}"
        result = tune(
            study_name=name, x=x_train, y=y_train, cv=cv.inner, groups=groups_train, plan=plan
        )
        if result.stopped_by == "interrupted":  # the other outer parts would stop at once
            raise StudyError("interrupted", study_name=name)
        studies.append(result)
        if on_outer is not None:
            on_outer(tuple(studies))
        return dict(result.best_params)

    estimate = nested_estimate(
        select, x, y, scheme=cv, objective=objective, seed=seed, groups=groups
    )
    return TunedEstimate(estimate=estimate, outer=tuple(studies))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TunedEstimate:
    """Nested CV's estimate of the tuning and the results of the outer studies that made
    it, in outer-fold order."""

    estimate: NestedEstimate
    outer: tuple[TuningResult, ...]


def outer_cost(outer: Sequence[TuningResult]) -> dict[str, Any]:
    """What the outer studies ``outer`` cost, as a job's result, its progress and its
    version record it (``nested``): their names, their trials (as
    :attr:`TuningResult.n_trials` counts them) and their wall and CPU seconds (each
    study's over all its runs and workers, as the main study's ``wall_s``/``cpu_s``),
    summed over the studies."""
    return {
        "studies": [r.study_name for r in outer],
        "n_trials": sum(r.n_trials for r in outer),
        "wall_s": sum(r.wall_s for r in outer),
        "cpu_s": sum(r.cpu_s for r in outer),
    }


def outer_plan(ceiling: CostCeiling | None) -> WarmStartPlan | None:
    """The plan of the outer studies: cold (no history enqueued, the full space), with the
    job's serving-cost ceilings, which read no label (a configuration's measured latency
    and memory) and bound what the job itself may choose."""
    return None if ceiling is None else with_ceiling(None, ceiling)


def estimate_details(estimate: NestedEstimate, plan: WarmStartPlan | None) -> dict[str, Any]:
    """``estimate`` as a version's ``nested_estimate`` detail; ``plan`` is the outer
    studies' (:func:`outer_plan`)."""
    return {
        "outer_scores": list(estimate.outer.scores),
        "mean": estimate.outer.mean,
        "std": estimate.outer.std,
        "chosen": [dict(c) for c in estimate.chosen],
        "warm_start": False,
        "plan_strategies": list(plan.strategies) if plan is not None else [],
    }
