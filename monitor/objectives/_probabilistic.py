"""Proper scoring rules and threshold metrics on class probabilities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.objectives._base import (
    Objective,
    ObjectiveError,
    check_lengths,
    class_labels,
    class_proba,
)
from monitor.objectives._params import COST_MATRIX_RULE, THRESHOLD, check_cost_matrix

_EPS = 1e-15


class _ClassProbabilities(Objective):
    """An objective of class probabilities: a label names one of their columns."""

    def classes(self, y_pred: np.ndarray) -> int | None:
        return int(class_proba(y_pred).shape[1])


class LogLoss(_ClassProbabilities):
    name: ClassVar[str] = "log_loss"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = check_lengths(y_true, y_pred)
        proba = np.clip(class_proba(p), _EPS, 1.0)
        labels = class_labels(t, proba.shape[1])
        true = proba[np.arange(len(labels)), labels]
        if np.asarray(p).ndim == 2 and np.asarray(p).shape[1] > 1:
            # the true class's share of its row: a model whose rows drift off summing to
            # one scored -log of a column alone, and one answering [1, 1] had loss 0
            true = true / proba.sum(axis=1)
        return np.asarray(-np.log(true))

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())


class Brier(_ClassProbabilities):
    """Multi-class Brier score (sum over classes); for binary models twice the usual
    one-column score is avoided by using the positive column only."""

    name: ClassVar[str] = "brier"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    @property
    def loss_range(self) -> float:
        return 2.0  # a sure wrong class: 1 + 1 (a binary model's: :class:`BinaryBrier`)

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = check_lengths(y_true, y_pred)
        proba = class_proba(p)
        labels = class_labels(t, proba.shape[1])
        if proba.shape[1] == 2:
            return np.asarray((proba[:, 1] - labels) ** 2)
        onehot = np.eye(proba.shape[1])[labels]
        return np.asarray(((proba - onehot) ** 2).sum(axis=1))

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())


class BinaryBrier(Brier):
    """Brier of a binary model, built by ``make_objective("brier", task="binary")``: it
    scores the positive column only, so its loss is in [0, 1]. The paired test's
    allowance scales with the range: the multiclass bound of 2 doubled it."""

    @property
    def loss_range(self) -> float:
        return 1.0


class Accuracy(_ClassProbabilities):
    name: ClassVar[str] = "accuracy"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})
    parameters: ClassVar[dict[str, object]] = {"threshold": THRESHOLD}

    def __init__(self, *, threshold: float = 0.5) -> None:
        self.threshold = THRESHOLD.check("threshold", threshold)

    @property
    def loss_range(self) -> float:
        return 1.0

    def _predicted(self, proba: np.ndarray) -> np.ndarray:
        if proba.shape[1] == 2:
            return (proba[:, 1] >= self.threshold).astype(np.int64)
        return np.asarray(proba.argmax(axis=1))

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = check_lengths(y_true, y_pred)
        proba = class_proba(p)
        labels = class_labels(t, proba.shape[1])
        return np.asarray(self._predicted(proba) != labels, dtype=np.float64)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return 1.0 - float(self.per_request_loss(y_true, y_pred).mean())


class CostWeightedError(Objective):
    """Mean cost of decisions from a cost matrix ``cost[true][predicted]``.

    The decision per request is the class with the lowest expected cost under the
    predicted probabilities (Bayes decision), so the objective rewards calibration too.
    """

    name: ClassVar[str] = "cost"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})
    parameters: ClassVar[dict[str, object]] = {"cost_matrix": COST_MATRIX_RULE}

    def __init__(self, *, cost_matrix: list[list[float]]) -> None:
        self.cost_matrix = check_cost_matrix(cost_matrix)

    @property
    def loss_range(self) -> float:
        return float(self.cost_matrix.max() - self.cost_matrix.min())

    def classes(self, y_pred: np.ndarray) -> int | None:
        return int(self.cost_matrix.shape[0])

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = check_lengths(y_true, y_pred)
        proba = class_proba(p)
        k = self.cost_matrix.shape[0]
        if proba.shape[1] != k:
            raise ObjectiveError(
                f"cost matrix is {k}x{k} but predictions have {proba.shape[1]} classes"
            )
        labels = class_labels(t, k)
        decision = (proba @ self.cost_matrix).argmin(axis=1)
        return np.asarray(self.cost_matrix[labels, decision])

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())
