"""Regression errors, each with a per-request loss."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.objectives._base import Objective, ObjectiveError, check_lengths, scorable


def _values(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = check_lengths(y_true, y_pred)
    pred = np.asarray(p, dtype=np.float64)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim != 1:
        raise ObjectiveError(f"regression predictions must be one column, got shape {pred.shape}")
    return np.asarray(t, dtype=np.float64).reshape(-1), pred


class MAE(Objective):
    name: ClassVar[str] = "mae"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = _values(y_true, y_pred)
        return np.asarray(np.abs(t - p))

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())


class RMSE(Objective):
    """Root mean squared error; its per-request loss is the squared error (the mean of
    which is the MSE, a monotone transform of RMSE — the right quantity to compare)."""

    name: ClassVar[str] = "rmse"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = _values(y_true, y_pred)
        return np.asarray((t - p) ** 2)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.sqrt(self.per_request_loss(y_true, y_pred).mean()))


class MAPE(Objective):
    name: ClassVar[str] = "mape"
    greater_is_better: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t, p = _values(y_true, y_pred)
        if (t == 0).any():
            raise ObjectiveError("MAPE is undefined for zero labels; use MAE")
        return np.asarray(np.abs((t - p) / t))

    label_rule: ClassVar[str] = "a label of 0"

    def valid_labels(self, y_true: np.ndarray) -> np.ndarray:
        """Labels other than 0, whose loss is undefined whatever the prediction."""
        return np.asarray(np.asarray(y_true, dtype=np.float64).reshape(-1) != 0)

    def valid_rows(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """Rows whose loss is finite and at most ``MAX_LOSS``: not a label of 0, nor one
        so small against its error (1e-310, 1e-160 for a prediction of 5) that the loss
        is infinite or too large for the tests' sums of squares."""
        if np.asarray(y_true).shape[0] == 0:
            return np.ones(0, dtype=bool)
        t, p = _values(y_true, y_pred)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return scorable(np.abs((t - p) / t))

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())
