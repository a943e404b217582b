"""The objective interface: how "good" is defined, shared by monitoring, A/B tests and tuning.

An objective scores predictions against labels. Every objective reports a ``value`` over a
window and says whether higher is better; objectives that decompose per request also give
``per_request_loss`` (lower is better), which the paired shadow comparison, the live
split's test and the rollback watch need. Of the objectives without one, only a binary
model's ROC AUC is compared between versions, by a group-sequential DeLong test on shadow
traffic; PR AUC, F-beta, recall at a precision floor and precision at a recall floor are
not compared at all (the comparison runner logs a warning and skips them: deciding them on
ROC AUC could promote a challenger worse on the objective). They still serve monitoring
(each decay window's realised value, and its trend) and tuning (the cross-validated
:meth:`Objective.loss` a study minimises).

Predictions are the model's primary output as a float array: class probabilities
``[n, n_classes]`` for classifiers (a ``[n]`` or ``[n, 1]`` array is read as the positive
class probability of a binary model), values ``[n]`` for regressors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]

# The largest per-request loss a row may have to be scored. The paired and unpaired tests
# sum losses' squares and cubes (the skewness) and multiply two variances (a loss to the
# fourth power): at 1e50 all of them stay far inside a float for any number of requests,
# while a loss of 5e160 (MAPE of a prediction of 5 for a label of 1e-160) overflowed and
# the test's state could not be stored. No business loss comes near it.
MAX_LOSS = 1e50


class ObjectiveError(ValueError):
    """Inputs an objective cannot score (shapes, labels outside the classes, empty data),
    or a parameter it cannot be built with: then ``param`` names the parameter
    (``"min_precision"``), so a config can say where it is (``None``: not a parameter's)."""

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param


class Objective(ABC):
    """A business or statistical metric over a window of labelled predictions."""

    name: ClassVar[str]
    greater_is_better: ClassVar[bool]
    tasks: ClassVar[frozenset[str]]
    #: The parameters the objective takes, each with its rule as a message says it.
    parameters: ClassVar[dict[str, object]] = {}

    @property
    def has_per_request_loss(self) -> bool:
        return type(self).per_request_loss is not Objective.per_request_loss

    @property
    def loss_range(self) -> float | None:
        """The largest possible difference between two requests' losses, or ``None`` when
        the loss is unbounded (a paired test uses it to allow for rare losses it has not
        seen yet)."""
        return None

    @abstractmethod
    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The metric over the window."""

    def per_request_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """Loss per request (lower is better) whose mean is the objective's value or its
        negation. Raises :class:`ObjectiveError` for objectives that do not decompose."""
        raise ObjectiveError(f"objective {self.name!r} has no per-request loss")

    def classes(self, y_pred: np.ndarray) -> int | None:
        """How many classes a label names for these predictions (a label must be an
        integer in ``[0, classes)``), or ``None`` when labels are not classes."""
        return None

    #: The labels :meth:`valid_labels` refuses, as a log says it (``""``: none).
    label_rule: ClassVar[str] = ""

    def valid_labels(self, y_true: np.ndarray) -> np.ndarray:
        """Which labels the objective scores whatever the prediction, as a boolean mask
        (every one, unless the objective says otherwise: MAPE has no loss for a label of
        0; RMSE's squared error can pass ``MAX_LOSS`` for a label past 5e24). One rule for
        all: :meth:`valid_rows` leaves the others out of monitoring and the comparisons,
        and a training window leaves them out too (a tuning trial scoring its folds on
        them failed, or tuned towards a "missing" sentinel)."""
        return np.ones(np.asarray(y_true).shape[0], dtype=bool)

    def valid_rows(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """Which rows the objective can score, as a boolean mask: every prediction of the
        row must be finite, a classifier's label must name one of the predictions'
        classes (:meth:`classes`; not 7 of three, nor 1.5 or NaN), the label must be one
        :meth:`valid_labels` keeps (not MAPE's 0, nor RMSE's 3.4e38, even answered
        exactly), and the loss of an objective that has one must be a finite number of at
        most ``MAX_LOSS``. A paired comparison consumes the requests of the others without
        using them, and a decay window leaves them out of its value, instead of failing on
        the whole batch, or overflowing, at every look."""
        n = np.asarray(y_true).shape[0]
        if n == 0:
            return np.ones(0, dtype=bool)
        t, p = check_lengths(y_true, y_pred)
        k = self.classes(p)
        valid = np.ones(n, dtype=bool) if k is None else class_rows(t, k)
        valid &= np.isfinite(np.asarray(p, dtype=np.float64).reshape(n, -1)).all(axis=1)
        valid &= np.asarray(self.valid_labels(t), dtype=bool)
        if self.has_per_request_loss and valid.any():
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                valid[valid] = scorable(self.per_request_loss(t[valid], p[valid]))
        return valid

    def loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The value oriented so that lower is better (what tuners minimise)."""
        v = self.value(y_true, y_pred)
        return -v if self.greater_is_better else v

    def describe(self) -> str:
        return self.name


def scorable(loss: np.ndarray) -> np.ndarray:
    """Which per-request losses are finite numbers of at most ``MAX_LOSS`` in size."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(np.asarray(loss, dtype=np.float64)) <= MAX_LOSS)


def positive_proba(y_pred: np.ndarray) -> np.ndarray:
    """Positive-class probability of a binary model's output."""
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim == 2:
        if p.shape[1] == 1:
            p = p[:, 0]
        elif p.shape[1] == 2:
            p = p[:, 1]
        else:
            raise ObjectiveError(f"binary predictions must have 1 or 2 columns, got {p.shape[1]}")
    if p.ndim != 1:
        raise ObjectiveError(f"predictions must be 1-D or 2-D, got shape {p.shape}")
    return p


def class_proba(y_pred: np.ndarray) -> np.ndarray:
    """``[n, n_classes]`` probabilities (a 1-column or 1-D array becomes 2 columns)."""
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
        q = p.reshape(-1)
        return np.column_stack([1.0 - q, q])
    if p.ndim != 2:
        raise ObjectiveError(f"predictions must be 1-D or 2-D, got shape {p.shape}")
    return p


def check_lengths(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape[0] != p.shape[0]:
        raise ObjectiveError(f"{t.shape[0]} labels but {p.shape[0]} predictions")
    if t.shape[0] == 0:
        raise ObjectiveError("no labelled predictions to score")
    return t, p


def class_rows(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    """Which labels name one of ``n_classes`` classes: integers in ``[0, n_classes)``."""
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        return np.asarray((t >= 0) & (t < n_classes) & (t == np.floor(t)))


def class_labels(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    if not class_rows(t, n_classes).all():
        raise ObjectiveError(f"labels must be integers in [0, {n_classes - 1}]")
    return t.astype(np.int64)
