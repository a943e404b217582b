"""Running a warm-started, budgeted, resumable tuning study.

Several processes calling :func:`run_study` with the same ``storage`` and
``study_name`` work on one study (Optuna RDB storage; PostgreSQL for real parallelism).
The first one creates it, stores the warm-start plan, the dataset version, the objective
and the CV, and enqueues the plan's configurations; later ones join and adopt the stored
plan, and are refused when their data, objective or CV (the rows' group ids included)
differ. With
``heartbeat_interval`` set, trials of crashed workers are failed once stale and retried,
and a run that stops, whatever stops it, first waits until no trial another worker is
training still runs — each has ended or gone stale — and then chooses the study's
winner among all its trials (:func:`~retune._await_running.await_running_trials`);
without it, a run opening the study fails the trials no live run is training, as the
runs' records tell (:mod:`retune._runs`).

This module is the front: it checks the window, opens and settles the study, runs its
loop and chooses the winner. It hands on one trial's work, and what a trial counts as
(:mod:`retune._trial`), the wait for other workers' running trials
(:mod:`retune._await_running`) and, when no trial may win, the account of why
(:mod:`retune._no_winner`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.objectives import Objective, objective_setup
from retune._await_running import await_running_trials, stale_grace_s
from retune._budget import Budget, BudgetTracker
from retune._errors import CVError, StudyError
from retune._no_winner import no_winner
from retune._optuna import OUTCOME, RUN_ATTR, FailTrial, StudyHandle, TrialHandle, open_study
from retune._runs import (
    ended_runs,
    fail_orphaned_trials,
    new_run_key,
    record_run_end,
    record_run_progress,
    register_run,
    time_spent,
)
from retune._settle import (
    cv_setup,
    settle_cv_pinned_before_groups,
    settle_plan,
    settle_setup,
    settle_space,
)
from retune._trial import counts, run_trial, takes_budget
from retune.cv import CVScheme, FoldScores, NestedCV, check_xy, dataset_version
from retune.cv._window import check_window
from retune.space import SearchSpace
from retune.warmstart import CostPredictor, WarmStartPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TuningResult:
    """Outcome of one process's :func:`run_study` call, over the whole study."""

    study_name: str
    best_params: Mapping[str, Any]
    best_value: float
    n_trials: int
    n_pruned: int
    n_vetoed: int
    n_cost_rejected: int
    n_failed: int
    stopped_by: str
    wall_s: float
    cpu_s: float
    fold_scores_of_best: FoldScores
    dataset_version: str
    plan: WarmStartPlan | None
    #: The space the study searched: the one it began with (a resumed or joined study
    #: keeps it, whatever the caller's file holds now).
    space: SearchSpace


#: Configurations rejected for their serving cost, per trial of the budget, before a
#: study stops as ``exhausted``.
MAX_COST_REJECTIONS = 10


def run_study(
    *,
    storage: str,
    study_name: str,
    space: SearchSpace,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    objective: Objective,
    cv: CVScheme,
    budget: Budget,
    plan: WarmStartPlan | None,
    seed: int,
    groups: np.ndarray[Any, Any] | None = None,
    heartbeat_interval: int | None = None,
    cost_predictor: CostPredictor | None = None,
    interrupted: Callable[[], bool] | None = None,
    model: str | None = None,
    job_id: int | None = None,
) -> TuningResult:
    """Tune ``space`` on ``(x, y)`` until ``budget`` stops the study; see the module docstring.

    ``storage`` is an RDB URL (``sqlite:///f.db``, ``postgresql+psycopg://…``) or a
    journal file path. Trials minimise ``objective.loss`` averaged over ``cv`` folds;
    each trial records ``dataset_version``, ``fold_scores``, ``fold_spread`` and its
    ``outcome`` as user attributes. A configuration predicted by ``cost_predictor``
    over the plan's cost ceiling is rejected (pruned) before training. Once
    ``interrupted()`` is true the study stops after the running trial
    (``stopped_by="interrupted"``). ``model`` and ``job_id``, the caller's names for what
    the study tunes, are recorded as the study's user attributes of those names by the
    first run given them (:func:`_label`). Raises
    :class:`StudyError` for storage problems, for a window ``cv`` cannot split (a nested
    scheme's outer training parts included: they are tuned next), for one no trial could
    complete on (a classification window or training fold of one class, a test fold
    ``objective`` cannot score: :func:`~retune.cv._window.check_window`), for a nested
    scheme's outer part that could not be tuned or scored so (:meth:`NestedCV.check`),
    for joining a study tuned on other data, with another objective or CV (group ids
    included), and when no trial completed. Labels that do not fit the rows (another
    count, not numbers, not one column: :func:`~retune.cv.check_xy`) are refused first, before the
    study is opened.
    """
    try:  # before all: every trial would fail alike, or the checks below crash on them
        check_xy(x, y)
    except CVError as exc:
        raise StudyError(
            f"the training window cannot be tuned: {exc}", study_name=study_name
        ) from exc
    version = dataset_version(x, y)
    try:  # once, up front: a window no fold plan fits would fail every trial alike
        for _ in cv.split(x, y, groups=groups, seed=seed):
            pass
        if isinstance(cv, NestedCV):  # and each outer part, which is tuned after this study
            cv.check(x, y, groups=groups, seed=seed)
    except CVError as exc:
        raise StudyError(
            f"the training window cannot be split by {cv.name}: {exc}", study_name=study_name
        ) from exc
    try:  # and one no configuration could fit or be scored on fails every trial alike too
        check_window(x, y, scheme=cv, objective=objective, seed=seed, groups=groups)
    except CVError as exc:
        raise StudyError(
            f"no trial could complete on the training window with {cv.name}: {exc}",
            study_name=study_name,
        ) from exc
    if isinstance(cv, NestedCV):  # nor could an outer part's study, or its scoring, later
        try:
            cv.check(x, y, groups=groups, seed=seed, objective=objective)
        except CVError as exc:
            raise StudyError(
                f"{cv.name} cannot estimate the tuning on the training window: {exc}",
                study_name=study_name,
            ) from exc
    tracker = BudgetTracker(budget)
    started_at = time.time()  # UTC epoch: the run's interval, beside other hosts' runs
    handle = open_study(
        storage=storage,
        study_name=study_name,
        seed=seed,
        plan=plan,
        pruner=budget.pruner,
        heartbeat_interval=heartbeat_interval,
    )
    try:  # the run's connections are closed after it: a worker runs several studies
        _label(handle, model=model, job_id=job_id)
        plan = settle_plan(handle, plan, version)
        pinned_cv = cv_setup(cv, seed, groups=groups)
        settle_cv_pinned_before_groups(handle, pinned_cv)
        settle_setup(handle, objective=objective_setup(objective), cv=pinned_cv)
        space = settle_space(handle, space)
        run_key = new_run_key()
        ended_before = ended_runs(handle)  # read before this run records itself
        record = register_run(handle, run_key, started_at=started_at)

        def objective_fn(trial: TrialHandle) -> float:
            trial.set_attr(RUN_ATTR, run_key)
            # a stale trial's retry copies its attributes: an outcome recorded by the killed
            # attempt is not this one's (it would count if this one is killed or skipped)
            trial.set_attr(OUTCOME, None)
            if budget.max_trials is not None:
                # workers that checked the budget at once may all have started a trial: the
                # ones numbered beyond it give theirs up
                ahead = sum(takes_budget(t) for t in handle.trials() if t.number < trial.number)
                if ahead >= budget.max_trials:
                    reason = f"max_trials ({budget.max_trials}) taken by the trials before it"
                    trial.set_attr("skipped", reason)
                    raise FailTrial(reason)
            return run_trial(
                trial,
                space=space,
                x=x,
                y=y,
                objective=objective,
                cv=cv,
                seed=seed,
                groups=groups,
                version=version,
                plan=plan,
                cost_predictor=cost_predictor,
            )

        def stop_reason() -> str | None:
            # the other runs' time as they last recorded it, read at each check as the
            # trials are: those working at once go on spending
            spent = time_spent(handle, before=started_at, own=run_key, ended_before=ended_before)
            tracker.set_others(**spent)
            if interrupted is not None and interrupted():
                return "interrupted"
            trials = handle.trials()
            counted = [t for t in trials if counts(t)]
            # a configuration rejected for its serving cost is never trained: it spends no
            # trial of the budget, but a space where nearly everything is too costly stops
            trained = [t for t in counted if t.user_attrs[OUTCOME] != "cost_rejected"]
            if len(counted) - len(trained) >= MAX_COST_REJECTIONS * max(budget.max_trials or 10, 1):
                return "exhausted"
            taken = sum(takes_budget(t) for t in trials)  # trained, or training elsewhere
            return tracker.stop_reason(taken, [t.value for t in trained])

        def should_stop() -> str | None:
            # after each trial: a run killed before its end leaves what it spent so far
            record_run_progress(handle, run_key, record, tracker)
            if heartbeat_interval is None:
                return stop_reason()
            handle.fail_stale_trials()  # at every check: none stays RUNNING past its grace
            reason = stop_reason()
            if reason is None or reason == "interrupted":
                return reason
            # the winner is the study's: trials still running elsewhere end first (those
            # of a budget spent start no more), and may change why, or whether, to stop:
            # a stale one frees its place of max_trials, a better one ends a stall
            deadline = None
            if budget.wall_time_s is not None:  # see await_running_trials
                limit_s = max(budget.wall_time_s, stale_grace_s(heartbeat_interval))
                deadline = time.monotonic() + limit_s
            while await_running_trials(
                handle,
                heartbeat_interval=heartbeat_interval,
                interrupted=interrupted,
                deadline=deadline,
            ):
                reason = stop_reason()
                if reason is None or reason == "interrupted":
                    break
            return reason

        try:
            if heartbeat_interval is None:  # a trial no live run is training: the runs' records
                fail_orphaned_trials(handle, own=run_key)
            handle.optimize(objective_fn, should_stop=should_stop)
        finally:
            record_run_end(handle, run_key, record, tracker)
        return _result(handle, tracker, version, plan, space, max_fold_spread=cv.max_fold_spread)
    finally:
        handle.close()


def _label(handle: StudyHandle, **labels: str | int | None) -> None:
    """Record ``labels`` (the model and job the study tunes) as the study's user
    attributes, each once: a study keeps those it was created with, and one begun before
    studies recorded them is labelled by the first run that has them. A run naming others
    joins it all the same (the study's pins say whether it may) and says so."""
    attrs = handle.user_attrs
    for key, value in labels.items():
        stored = attrs.get(key)
        if value is None:
            continue
        if stored is None:
            handle.set_user_attr(key, value)
        elif stored != value:
            logger.warning(
                "study %s: recorded %s %r, this run was given %r; the recorded one is kept",
                handle.name,
                key,
                stored,
                value,
            )


def _spread_within(attrs: Mapping[str, Any], max_fold_spread: float | None) -> bool:
    """Whether a trial's recorded fold spread is within ``max_fold_spread`` (a trial that
    recorded none, or no limit, is)."""
    spread = attrs.get("fold_spread")
    return max_fold_spread is None or spread is None or float(spread) <= max_fold_spread


def _result(
    handle: StudyHandle,
    tracker: BudgetTracker,
    version: str,
    plan: WarmStartPlan | None,
    space: SearchSpace,
    *,
    max_fold_spread: float | None,
) -> TuningResult:
    """The study's outcome. The winner is the best complete trial whose fold spread is
    within ``max_fold_spread``, the limit this run works under: a trial an earlier run
    (or a joining worker) completed without that limit is vetoed here, counted in
    ``n_vetoed``, rather than chosen. (The limit is not pinned with the CV: it changes
    which trials may win, not what their losses mean.)"""
    trials = handle.trials()
    outcomes = [t.user_attrs.get(OUTCOME) for t in trials if counts(t)]
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    within = [t for t in complete if _spread_within(t.user_attrs, max_fold_spread)]
    n_over = len(complete) - len(within)  # completed before the limit applied
    if not within:
        counted = sorted((t for t in trials if counts(t)), key=lambda t: t.number)
        raise StudyError(
            no_winner(counted, max_fold_spread=max_fold_spread, plan=plan),
            study_name=handle.name,
        )
    complete = within
    best = min(complete, key=lambda t: (t.value, t.number))
    assert best.value is not None
    folds = tuple(float(s) for s in best.user_attrs.get("fold_scores", [best.value]))
    return TuningResult(
        study_name=handle.name,
        best_params=dict(best.params),
        best_value=best.value,
        n_trials=len(outcomes),
        n_pruned=outcomes.count("pruned"),
        n_vetoed=outcomes.count("vetoed") + n_over,
        n_cost_rejected=outcomes.count("cost_rejected"),
        n_failed=outcomes.count("error"),
        stopped_by=handle.stopped_by or "exhausted",
        wall_s=tracker.wall_s,
        cpu_s=tracker.cpu_s,
        fold_scores_of_best=FoldScores.of(folds, max_fold_spread=None),
        dataset_version=version,
        plan=plan,
        space=space,
    )
