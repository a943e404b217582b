"""Running a warm-started, budgeted, resumable tuning study.

Several processes calling :func:`run_study` with the same ``storage`` and
``study_name`` work on one study (Optuna RDB storage; PostgreSQL for real parallelism).
The first one creates it, stores the warm-start plan, the dataset version, the objective
and the CV, and enqueues the plan's configurations; later ones join and adopt the stored
plan, and are refused when their data, objective or CV (the rows' group ids included)
differ. With
``heartbeat_interval`` set, trials of crashed workers are failed once stale and retried,
and a run whose ``max_trials`` only trials running elsewhere fill waits until each has
ended, gone stale or shown its worker alive (:func:`_await_running_trials`); without it,
a run opening the study fails the trials no live run is training, as the runs' records
tell (:mod:`retune._runs`).
"""

from __future__ import annotations

import hashlib
import json
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
    TrialRecord,
    open_study,
    ran,
    rebuild_sampler,
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
        plan = _settle_plan(handle, plan, version)
        cv_setup = _cv_setup(cv, seed, groups=groups)
        _settle_cv_pinned_before_groups(handle, cv_setup)
        _settle_setup(handle, objective=objective_setup(objective), cv=cv_setup)
        space = _settle_space(handle, space)
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
            if reason == "max_trials" and _await_running_trials(
                handle, heartbeat_interval=heartbeat_interval, interrupted=interrupted
            ):
                reason = stop_reason()
            return reason

        try:
            if heartbeat_interval is None:  # a trial no live run is training: the runs' records
                fail_orphaned_trials(handle, own=run_key)
            tracker.add_earlier(**time_spent(handle, before=started_at, own=run_key))
            handle.optimize(objective_fn, should_stop=should_stop)
        finally:
            record_run_end(handle, run_key, record, tracker)
        return _result(handle, tracker, version, plan, max_fold_spread=cv.max_fold_spread)
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
    handle: StudyHandle, *, heartbeat_interval: int, interrupted: Callable[[], bool] | None
) -> bool:
    """Wait until each trial RUNNING now has ended, been failed as stale, or shown that its
    worker lives; returns whether any was running.

    A trial running in another worker takes a place of ``max_trials``, but a killed
    worker's trial looks the same until its last heartbeat is ``STALE_AFTER_HEARTBEATS``
    intervals old: a run resumed at once stopped on that place, short of the budget, and
    left the trial RUNNING for good. Failing stale trials as it polls, the run waits one
    interval past that grace (a SQLite clock counts whole seconds): a trial neither ended
    nor stale by then has had a heartbeat since the wait began. Called with no trial of
    this run's own running (between trials).
    """
    waiting = {t.number for t in handle.trials() if t.state == "RUNNING"}
    if not waiting:
        return False
    poll_s = min(1.0, heartbeat_interval / 4)
    wait_s = (STALE_AFTER_HEARTBEATS + 1) * heartbeat_interval + poll_s
    logger.info(
        "study %s: max_trials is taken with trials %s running elsewhere; waiting up to %.1f s "
        "(heartbeat_interval %d s) for each to end, go stale or heartbeat",
        handle.name,
        sorted(waiting),
        wait_s,
        heartbeat_interval,
    )
    deadline = time.monotonic() + wait_s
    while True:
        time.sleep(poll_s)
        late = time.monotonic() >= deadline  # read before: the staleness check must be later
        handle.fail_stale_trials()
        waiting &= {t.number for t in handle.trials() if t.state == "RUNNING"}
        if not waiting or late or (interrupted is not None and interrupted()):
            return True


def _settle_space(handle: StudyHandle, space: SearchSpace) -> SearchSpace:
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


def _cv_setup(
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
        settings["inner"] = _cv_setup(inner, None)
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


def _settle_cv_pinned_before_groups(handle: StudyHandle, setup: dict[str, Any]) -> None:
    """Pin ``setup`` over a CV pinned before studies recorded group ids (an upgrade: its
    pin has no ``groups``) when the rest of it matches; otherwise leave the pin to
    :func:`_settle_setup`, which refuses any difference.

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
        return  # another CV: _settle_setup refuses it
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


def _spread_within(attrs: Mapping[str, Any], max_fold_spread: float | None) -> bool:
    """Whether a trial's recorded fold spread is within ``max_fold_spread`` (a trial that
    recorded none, or no limit, is)."""
    spread = attrs.get("fold_spread")
    return max_fold_spread is None or spread is None or float(spread) <= max_fold_spread


def _as_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as a study attribute reads back (lists for tuples and arrays)."""
    loaded: dict[str, Any] = json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))
    return loaded


def _settle_setup(handle: StudyHandle, **setup: dict[str, Any]) -> None:
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


def _settle_plan(
    handle: StudyHandle, plan: WarmStartPlan | None, version: str
) -> WarmStartPlan | None:
    """The warm-start plan every worker of the study samples by: ``plan`` for the worker
    that begins it, the stored one for a worker joining or resuming it.

    The first worker stores its plan (if any) and enqueues its configurations, then the
    dataset version: a study with a dataset version has settled its plan, so a worker
    finding one adopts what is stored, an empty plan (cost ceilings only) or none at all
    included, and its sampler is rebuilt from it. Otherwise it sampled by its own plan's
    box and frozen values, a plan the study never recorded. A stored plan without a
    dataset version was stopped before the settle ended, perhaps during the enqueue: the
    worker finding it enqueues the stored plan's configurations again (those already in
    the study are skipped) before writing the dataset version.
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
        if stored_version is None:  # the first worker stopped between the two writes
            _enqueue(handle, stored)  # maybe during the enqueue: what it did is skipped
            handle.set_user_attr("dataset_version", version)
        return stored
    if plan is not None:
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
        over = f"; {n_over} completed over max_fold_spread {max_fold_spread}" if n_over else ""
        raise StudyError(
            f"no trial completed{over}; see the trials' `error` attributes",
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
    )
