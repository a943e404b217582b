"""Objectives: how "good" is defined per model; one set of objects for monitoring,
A/B tests and tuning."""

from __future__ import annotations

import inspect
from typing import Any

from monitor.objectives._base import MAX_LOSS, Objective, ObjectiveError, Task, positive_proba
from monitor.objectives._decision import decision_threshold
from monitor.objectives._probabilistic import (
    Accuracy,
    BinaryBrier,
    Brier,
    CostWeightedError,
    LogLoss,
)
from monitor.objectives._ranking import (
    FBeta,
    PrAuc,
    PrecisionAtRecall,
    RecallAtPrecision,
    RocAuc,
    roc_auc,
)
from monitor.objectives._regression import MAE, MAPE, RMSE
from monitor.objectives._setup import objective_setup

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (
        LogLoss,
        Brier,
        Accuracy,
        CostWeightedError,
        RocAuc,
        PrAuc,
        FBeta,
        RecallAtPrecision,
        PrecisionAtRecall,
        MAE,
        RMSE,
        MAPE,
    )
}


def make_objective(name: str, *, task: str | None = None, **params: Any) -> Objective:
    """Build an objective by name, checking it fits the model's task (a binary model's
    cost matrix is 2x2; a multiclass model's accuracy takes no ``threshold``)."""
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise ObjectiveError(
            f"`objective` must be one of {', '.join(sorted(OBJECTIVES))}, got {name!r}"
        )
    _check_parameter_names(cls, params)
    objective = cls(**params)  # each parameter's type and range: ObjectiveError
    if task is not None and task not in cls.tasks:
        raise ObjectiveError(
            f"objective {name!r} does not apply to {task} models "
            f"(it fits {', '.join(sorted(cls.tasks))})"
        )
    if task == "multiclass" and isinstance(objective, Accuracy) and "threshold" in params:
        # else ignored: three columns or more are decided by their argmax
        raise ObjectiveError(
            "`threshold` applies to a binary model only (its positive-class probability); "
            "a multiclass model's accuracy takes the class of the largest probability: "
            f"remove `threshold`, got {params['threshold']!r}",
            param="threshold",
        )
    if task == "binary" and type(objective) is Brier:
        objective = BinaryBrier()  # its loss's bound is 1, not the multiclass 2
    if task == "binary" and isinstance(objective, CostWeightedError):
        k = objective.cost_matrix.shape[0]
        if k != 2:  # else every window's predictions (two classes) fail to score
            raise ObjectiveError(
                "`cost_matrix` of a binary model must be 2x2 (cost[true][predicted] of "
                f"classes 0 and 1), got {k}x{k}",
                param="cost_matrix",
            )
    return objective


def _check_parameter_names(cls: type[Objective], params: dict[str, Any]) -> None:
    """Every parameter is one ``cls`` takes, and every one it needs is given (a
    constructor's ``TypeError`` said neither the valid names nor the rule)."""
    taken = cls.parameters
    unknown = sorted(set(params) - set(taken))
    if unknown:
        got = ", ".join(f"`{p}`" for p in unknown)
        if not taken:
            raise ObjectiveError(
                f"objective {cls.name!r} takes no parameters, got {got}", param=unknown[0]
            )
        valid = " or ".join(f"`{p}`" for p in sorted(taken))
        raise ObjectiveError(f"objective {cls.name!r} takes {valid}, got {got}", param=unknown[0])
    signature = inspect.signature(cls.__init__)
    for field, rule in taken.items():
        if field not in params and signature.parameters[field].default is inspect.Parameter.empty:
            raise ObjectiveError(f"objective {cls.name!r} needs `{field}`, {rule}", param=field)


__all__ = [
    "MAE",
    "MAPE",
    "MAX_LOSS",
    "OBJECTIVES",
    "RMSE",
    "Accuracy",
    "Brier",
    "CostWeightedError",
    "FBeta",
    "LogLoss",
    "Objective",
    "ObjectiveError",
    "PrAuc",
    "PrecisionAtRecall",
    "RecallAtPrecision",
    "RocAuc",
    "Task",
    "decision_threshold",
    "make_objective",
    "objective_setup",
    "positive_proba",
    "roc_auc",
]
