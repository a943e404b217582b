"""One trial of a study, and what it counts as.

:func:`run_trial` samples a configuration, rejects it before training when its predicted
serving cost is over the plan's ceiling, cross-validates it and records its ``outcome``
(``complete``, ``vetoed``, ``pruned``, ``cost_rejected`` or ``error``) as a user
attribute; :func:`counts` and :func:`takes_budget` read that outcome back, as
:func:`~retune.run_study` counts trials for its result and for ``max_trials``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune._errors import CVError
from retune._optuna import OUTCOME, FailTrial, PruneTrial, TrialHandle, TrialLost, TrialRecord, ran
from retune.cv import CVScheme, cross_validate
from retune.space import SearchSpace
from retune.warmstart import CostPredictor, WarmStartPlan

# The study's logger, not this module's: a failed configuration was always logged (and
# filtered, by operators and tests) under it.
logger = logging.getLogger("retune._study")


def run_trial(
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
    """Train and score one configuration sampled from ``space`` on ``cv``'s folds,
    recording its outcome on ``trial``; returns its mean loss. Raises ``PruneTrial`` for
    one rejected for its cost or pruned, ``FailTrial`` for one failed or vetoed (any
    error of the configuration's is caught here, the trial's boundary, and logged)."""
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


def counts(trial: TrialRecord) -> bool:
    """Whether ``trial`` ran, as the result counts trials (:func:`ran`), and is not WAITING.

    A stale trial's retry (a WAITING copy: Optuna's ``RetryHeartbeatStaleTrialCallback``)
    copies its user attributes: a worker killed after its trial recorded an ``outcome``
    but before Optuna marked it COMPLETE left an outcome on the retry too, and the one
    training was counted twice (a run resumed to ``max_trials=3`` stopped at once with 4).
    """
    return trial.state != "WAITING" and ran(trial.user_attrs)


def takes_budget(trial: TrialRecord) -> bool:
    """Whether ``trial`` counts towards ``max_trials``: it trained (any outcome but a cost
    rejection; not a WAITING retry's copy of its killed trial's, see :func:`counts`), or
    it is running and may train."""
    if trial.state == "WAITING":
        return False
    outcome = trial.user_attrs.get(OUTCOME)
    if outcome is not None:
        return bool(outcome != "cost_rejected")
    return trial.state == "RUNNING"
