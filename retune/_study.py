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
winner among all its trials (:func:`_await_running_trials`); without it, a run opening
the study fails the trials no live run is training, as the runs' records tell
(:mod:`retune._runs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune._budget import Budget, BudgetTracker
from retune._errors import CVError, StudyError
from retune._optuna import (
    OUTCOME,
    STALE_AFTER_HEARTBEATS,
    FailTrial,
    PruneTrial,
    StudyHandle,
    TrialHandle,
    TrialLost,
    TrialRecord,
    open_study,
    ran,
)
from retune._runs import (
    RUN_ATTR,
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
from retune.cv import CVScheme, FoldScores, NestedCV, cross_validate, dataset_version
from retune.cv._window import check_window
from retune.space import SearchSpace
from retune.warmstart import CostPredictor, WarmStartPlan
from retune.warmstart._base import objective_setup

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
) -> TuningResult:
    """Tune ``space`` on ``(x, y)`` until ``budget`` stops the study; see the module docstring.

    ``storage`` is an RDB URL (``sqlite:///f.db``, ``postgresql+psycopg://…``) or a
    journal file path. Trials minimise ``objective.loss`` averaged over ``cv`` folds;
    each trial records ``dataset_version``, ``fold_scores``, ``fold_spread`` and its
    ``outcome`` as user attributes. A configuration predicted by ``cost_predictor``
    over the plan's cost ceiling is rejected (pruned) before training. Once
    ``interrupted()`` is true the study stops after the running trial
    (``stopped_by="interrupted"``). Raises
    :class:`StudyError` for storage problems, for a window ``cv`` cannot split (a nested
    scheme's outer training parts included: they are tuned next), for one no trial could
    complete on (a classification window or training fold of one class, a test fold
    ``objective`` cannot score: :func:`~retune.cv._window.check_window`), for a nested
    scheme's outer part that could not be tuned or scored so (:meth:`NestedCV.check`),
    for joining a study tuned on other data, with another objective or CV (group ids
    included), and when no trial completed.
    """
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
        plan = settle_plan(handle, plan, version)
        pinned_cv = cv_setup(cv, seed, groups=groups)
        settle_cv_pinned_before_groups(handle, pinned_cv)
        settle_setup(handle, objective=objective_setup(objective), cv=pinned_cv)
        space = settle_space(handle, space)
        run_key = new_run_key()
        record = register_run(handle, run_key, started_at=started_at)

        def objective_fn(trial: TrialHandle) -> float:
            trial.set_attr(RUN_ATTR, run_key)
            # a stale trial's retry copies its attributes: an outcome recorded by the killed
            # attempt is not this one's (it would count if this one is killed or skipped)
            trial.set_attr(OUTCOME, None)
            if budget.max_trials is not None:
                # workers that checked the budget at once may all have started a trial: the
                # ones numbered beyond it give theirs up
                ahead = sum(_takes_budget(t) for t in handle.trials() if t.number < trial.number)
                if ahead >= budget.max_trials:
                    reason = f"max_trials ({budget.max_trials}) taken by the trials before it"
                    trial.set_attr("skipped", reason)
                    raise FailTrial(reason)
            return _run_trial(
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
            tracker.set_others(**time_spent(handle, before=started_at, own=run_key))
            if interrupted is not None and interrupted():
                return "interrupted"
            trials = handle.trials()
            counted = [t for t in trials if _counts(t)]
            # a configuration rejected for its serving cost is never trained: it spends no
            # trial of the budget, but a space where nearly everything is too costly stops
            trained = [t for t in counted if t.user_attrs[OUTCOME] != "cost_rejected"]
            if len(counted) - len(trained) >= MAX_COST_REJECTIONS * max(budget.max_trials or 10, 1):
                return "exhausted"
            taken = sum(_takes_budget(t) for t in trials)  # trained, or training elsewhere
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
            if budget.wall_time_s is not None:  # see _await_running_trials
                limit_s = max(budget.wall_time_s, _stale_grace_s(heartbeat_interval))
                deadline = time.monotonic() + limit_s
            while _await_running_trials(
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


def _counts(trial: TrialRecord) -> bool:
    """Whether ``trial`` ran, as the result counts trials (:func:`ran`), and is not WAITING.

    A stale trial's retry (a WAITING copy: Optuna's ``RetryHeartbeatStaleTrialCallback``)
    copies its user attributes: a worker killed after its trial recorded an ``outcome``
    but before Optuna marked it COMPLETE left an outcome on the retry too, and the one
    training was counted twice (a run resumed to ``max_trials=3`` stopped at once with 4).
    """
    return trial.state != "WAITING" and ran(trial.user_attrs)


def _takes_budget(trial: TrialRecord) -> bool:
    """Whether ``trial`` counts towards ``max_trials``: it trained (any outcome but a cost
    rejection; not a WAITING retry's copy of its killed trial's, see :func:`_counts`), or
    it is running and may train."""
    if trial.state == "WAITING":
        return False
    outcome = trial.user_attrs.get(OUTCOME)
    if outcome is not None:
        return bool(outcome != "cost_rejected")
    return trial.state == "RUNNING"


def _await_running_trials(
    handle: StudyHandle,
    *,
    heartbeat_interval: int,
    interrupted: Callable[[], bool] | None,
    deadline: float | None,
) -> bool:
    """Wait, failing stale trials as it polls, until no trial another worker is training
    runs; returns whether it waited for any that then ended (the study changed since the
    caller read it) or was interrupted meanwhile. Called by a run that stops, with no
    trial of its own running (between trials).

    The run that stopped first chose the winner from the trials ended by then, while a
    trial of another worker, begun before the budget was spent, was still running: a job
    registered a best of 0.5345 while that trial, ending under a second later, reached
    0.5328. A RUNNING trial is waited for until it ends, or until its heartbeats stop and
    it is failed as stale (``STALE_AFTER_HEARTBEATS`` intervals, the worker killed: a
    run resumed at once waits that long for its predecessor's trial). One naming no run
    has no worker behind it once a grace of one interval past that has passed (a worker
    names its run as its trial begins: one begun by hand, or killed before its first
    heartbeat, never goes stale). The wait ends early when ``interrupted()`` is true, and
    at ``deadline`` (monotonic seconds): a trial that heartbeats but never ends is then
    left out of the result, with a warning. :func:`run_study` sets it for a budget with
    ``wall_time_s``, that long after the run stopped (the budget again; at least the
    grace a killed worker's trial takes to go stale, so that a run resumed at once does
    not stop on its place of ``max_trials``); without, the run waits as long as a trial
    of its own would have run.
    """
    poll_s = _poll_s(heartbeat_interval)
    grace_s = _stale_grace_s(heartbeat_interval)
    first_seen: dict[int, float] = {}  # trials naming no run: when seen RUNNING first
    waited = False
    while True:
        now = time.monotonic()
        live = [
            t.number
            for t in handle.trials()
            if t.state == "RUNNING"
            and (RUN_ATTR in t.user_attrs or now - first_seen.setdefault(t.number, now) < grace_s)
        ]
        if not live:
            return waited
        if interrupted is not None and interrupted():
            return True
        if deadline is not None and now >= deadline:
            logger.warning(
                "study %s: trials %s still running elsewhere when this run's wait for them "
                "ended (wall_time_s after it stopped, or the heartbeats' grace if longer); "
                "its result leaves them out",
                handle.name,
                live,
            )
            return False
        if not waited:
            logger.info(
                "study %s: stopping with trials %s running elsewhere; waiting for each to end "
                "or go stale (heartbeat_interval %d s), %s",
                handle.name,
                live,
                heartbeat_interval,
                "however long" if deadline is None else f"at most {deadline - now:.1f} s",
            )
        waited = True
        time.sleep(poll_s)
        handle.fail_stale_trials()


def _poll_s(heartbeat_interval: int) -> float:
    """How often :func:`_await_running_trials` reads the trials."""
    return min(1.0, heartbeat_interval / 4)


def _stale_grace_s(heartbeat_interval: int) -> float:
    """How long a RUNNING trial whose worker died takes, at most, to be failed as stale by
    a run polling every :func:`_poll_s`: one interval past Optuna's grace (a SQLite clock
    counts whole seconds)."""
    return (STALE_AFTER_HEARTBEATS + 1) * heartbeat_interval + _poll_s(heartbeat_interval)


def _spread_within(attrs: Mapping[str, Any], max_fold_spread: float | None) -> bool:
    """Whether a trial's recorded fold spread is within ``max_fold_spread`` (a trial that
    recorded none, or no limit, is)."""
    spread = attrs.get("fold_spread")
    return max_fold_spread is None or spread is None or float(spread) <= max_fold_spread


def _run_trial(
    trial: TrialHandle,
    *,
    space: SearchSpace,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    objective: Objective,
    cv: CVScheme,
    seed: int,
    groups: np.ndarray[Any, Any] | None,
    version: str,
    plan: WarmStartPlan | None,
    cost_predictor: CostPredictor | None,
) -> float:
    params = space.sample(trial)
    trial.set_attr("dataset_version", version)
    if plan is not None and plan.cost is not None and cost_predictor is not None:
        latency, memory = cost_predictor(params)
        violation = plan.cost.violation(latency, memory)
        if violation is not None:
            trial.set_attr("cost_violation", violation)
            trial.set_attr(OUTCOME, "cost_rejected")
            raise PruneTrial(violation)
    try:
        scores = cross_validate(
            params,
            x,
            y,
            scheme=cv,
            objective=objective,
            seed=seed,
            groups=groups,
            pruning_callback=trial.report_fold,
        )
    except PruneTrial:
        trial.set_attr(OUTCOME, "pruned")
        raise
    except TrialLost:  # another process failed it: nothing of it is this run's to record
        raise
    except CVError as exc:
        trial.set_attr("error", str(exc))
        trial.set_attr(OUTCOME, "error")
        raise FailTrial(str(exc)) from exc
    except Exception as exc:  # the trial boundary: a bug or odd data fails one trial
        logger.exception("study trial %d: configuration %s failed", trial.number, dict(params))
        message = f"configuration failed: {type(exc).__name__}: {exc}"
        trial.set_attr("error", message)
        trial.set_attr(OUTCOME, "error")
        raise FailTrial(message) from exc
    trial.set_attr("fold_scores", list(scores.scores))
    trial.set_attr("fold_spread", scores.spread)
    if scores.vetoed:
        trial.set_attr(OUTCOME, "vetoed")
        raise FailTrial(f"fold spread {scores.spread:.4g} > max_fold_spread {cv.max_fold_spread}")
    trial.set_attr(OUTCOME, "complete")
    return scores.mean


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
    outcomes = [t.user_attrs.get(OUTCOME) for t in trials if _counts(t)]
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    within = [t for t in complete if _spread_within(t.user_attrs, max_fold_spread)]
    n_over = len(complete) - len(within)  # completed before the limit applied
    if not within:
        counted = sorted((t for t in trials if _counts(t)), key=lambda t: t.number)
        raise StudyError(
            _no_winner(counted, max_fold_spread=max_fold_spread, plan=plan),
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


def _no_winner(
    trials: list[TrialRecord], *, max_fold_spread: float | None, plan: WarmStartPlan | None
) -> str:
    """What happened to the study's ``trials`` (those that ran, by number) when none may
    win: how many were vetoed (the spreads and the limit), rejected for their serving
    cost (the ceiling and the first violation), failed (the first error) or pruned."""
    if not trials:
        return "no trial completed: none ran"
    groups: dict[str, list[TrialRecord]] = {}
    for t in trials:
        outcome = str(t.user_attrs[OUTCOME])
        if t.state == "COMPLETE" and t.value is not None:  # none within max_fold_spread
            outcome = "vetoed"  # completed before this run's limit applied
        elif outcome == "complete":
            outcome = "unfinished"
        groups.setdefault(outcome, []).append(t)
    parts = [
        (outcome, len(group), _outcome_phrase(outcome, group, max_fold_spread, plan))
        for outcome, group in sorted(groups.items(), key=lambda g: _ORDER.get(g[0], len(_ORDER)))
    ]
    if len(parts) == 1:
        outcome, _, phrase = parts[0]
        what = "configurations" if outcome == "cost_rejected" else "trials"
        were = "" if outcome == "error" else "were "
        return f"no trial completed: all {len(trials)} {what} {were}{phrase}"
    listed = "; ".join(f"{n} {phrase}" for _, n, phrase in parts)
    return f"no trial completed of {len(trials)} trials: {listed}"


#: The order :func:`_no_winner` names outcomes in (others after).
_ORDER = {"vetoed": 0, "cost_rejected": 1, "error": 2, "pruned": 3, "unfinished": 4}


def _outcome_phrase(
    outcome: str,
    group: list[TrialRecord],
    max_fold_spread: float | None,
    plan: WarmStartPlan | None,
) -> str:
    """How :func:`_no_winner` describes the trials of one ``outcome``."""
    if outcome == "vetoed":
        spreads = sorted(
            float(t.user_attrs["fold_spread"])
            for t in group
            if t.user_attrs.get("fold_spread") is not None
        )
        if not spreads:
            return "vetoed for their fold spread"
        shown = f"{spreads[0]:.2g}" + (
            f" to {spreads[-1]:.2g}" if spreads[-1] != spreads[0] else ""
        )
        if max_fold_spread is None:
            return f"vetoed for their fold spread ({shown}) by an earlier run's max_fold_spread"
        earlier = sum(t.user_attrs[OUTCOME] == "complete" for t in group)
        before = f", {earlier} completed before it applied" if earlier else ""
        return (
            f"vetoed for their fold spread ({shown} > max_fold_spread {max_fold_spread:g}{before})"
        )
    if outcome == "cost_rejected":
        details = []
        cost = plan.cost if plan is not None else None
        if cost is not None and cost.max_latency_p99_s is not None:
            details.append(f"max_latency_p99_s {cost.max_latency_p99_s:g} s")
        if cost is not None and cost.max_memory_bytes is not None:
            details.append(f"max_memory_bytes {cost.max_memory_bytes} B")
        ceiling = f"ceiling {', '.join(details)}; " if details else ""
        first = group[0].user_attrs.get("cost_violation")
        return (
            f"rejected before training for their predicted serving cost ({ceiling}first: {first})"
        )
    if outcome == "error":
        return f"failed (first: {group[0].user_attrs.get('error')})"
    if outcome == "unfinished":  # scored, then its worker stopped or lost it as stale
        return "scored but never finished as complete"
    return outcome
