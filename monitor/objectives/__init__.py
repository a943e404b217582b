"""Objectives: how "good" is defined per model; one set of objects for monitoring,
A/B tests and tuning."""

from __future__ import annotations

from typing import Any

from monitor.objectives._base import Objective, ObjectiveError, Task, positive_proba
from monitor.objectives._probabilistic import Accuracy, Brier, CostWeightedError, LogLoss
from monitor.objectives._ranking import (
    FBeta,
    PrAuc,
    PrecisionAtRecall,
    RecallAtPrecision,
    RocAuc,
    roc_auc,
)
from monitor.objectives._regression import MAE, MAPE, RMSE

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
    """Build an objective by name, checking it fits the model's task."""
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise ObjectiveError(
            f"`objective` must be one of {', '.join(sorted(OBJECTIVES))}, got {name!r}"
        )
    try:
        objective = cls(**params)
    except TypeError as exc:
        raise ObjectiveError(f"objective {name!r} got invalid parameters {params}: {exc}") from exc
    if task is not None and task not in cls.tasks:
        raise ObjectiveError(
            f"objective {name!r} does not apply to {task} models "
            f"(it fits {', '.join(sorted(cls.tasks))})"
        )
    return objective


__all__ = [
    "MAE",
    "MAPE",
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
    "make_objective",
    "positive_proba",
    "roc_auc",
]
