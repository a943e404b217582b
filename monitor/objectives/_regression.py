"""Regression errors, each with a per-request loss."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.objectives._base import MAX_LOSS, Objective, ObjectiveError, check_lengths

#: The largest label magnitude RMSE scores: past it a prediction of the same magnitude
#: and the other sign (a model answering the negated sentinel, say) gives a squared error
#: past ``MAX_LOSS``. MAE's loss passes ``MAX_LOSS`` only past ``MAX_LOSS / 2`` (5e49),
#: beyond float32's range, which the labels API and a training window refuse already.
_RMSE_LABEL_BOUND = float(np.sqrt(MAX_LOSS)) / 2


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

    label_rule: ClassVar[str] = (
        f"a label past ±{_RMSE_LABEL_BOUND:.3g}, whose squared error can pass the "
        f"largest loss scored, {MAX_LOSS:.3g}"
    )

    def valid_labels(self, y_true: np.ndarray) -> np.ndarray:
        """Finite labels of at most ``sqrt(MAX_LOSS) / 2`` (5e24) in size: a larger one
        (3.4e38, a common "missing" sentinel) has a squared error past ``MAX_LOSS`` for a
        prediction of its size and the other sign, so whether its row was scored hung on
        the answer, and training took it as a target (a CV RMSE of 6e36)."""
        t = np.asarray(y_true, dtype=np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            return np.asarray(np.abs(t) <= _RMSE_LABEL_BOUND)

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
        """Labels other than 0, whose loss is undefined whatever the prediction. The rows
        :meth:`valid_rows` keeps are those too whose loss is finite and at most
        ``MAX_LOSS``: not a label so small against its error (1e-310, 1e-160 for a
        prediction of 5) that the loss is infinite or too large for the tests' sums of
        squares."""
        return np.asarray(np.asarray(y_true, dtype=np.float64).reshape(-1) != 0)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.per_request_loss(y_true, y_pred).mean())
