"""Whether a training window can be tuned at all: checks that need the task and the
objective, which a CV scheme (rows only) does not know.

A window failing one of them fails every trial alike, so :func:`retune.run_study`
refuses it before the first one rather than spending the budget on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune._errors import CVError
from retune.cv._base import CVScheme

#: The most classes a classification window may name: a label of 1e9 made each constant
#: (and each trial's) prediction a row of a billion class shares.
MAX_CLASSES = 10_000


def check_window(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    scheme: CVScheme,
    objective: Objective,
    seed: int,
    groups: np.ndarray[Any, Any] | None = None,
) -> None:
    """Raise :class:`CVError` naming the first reason ``(x, y)`` cannot be tuned with
    ``scheme`` and ``objective``:

    * a classification window (``objective`` is not a regression one) needs labels that
      are class indices and two classes or more, and so does each training fold (a
      one-class fold fails the linear and boosted classifiers to fit); a regression
      window needs a target of two values or more (finite ones; its training folds are
      not checked: a series whose first rows share one value is tuned over time);
    * some feature must vary over the window's rows (its finite values: a column that
      is one value apart from NaNs is that value once imputed), so two rows at least
      differ: a window whose every feature is constant (a feed broken to defaults)
      trains every configuration into a constant prediction, which would be registered
      and could be promoted;
    * ``objective`` must be computable on each test fold: it scores a constant
      prediction (the training fold's class shares, or its mean) there once, and an
      objective that cannot (ROC AUC or PR AUC of a fold without both classes, MAPE of
      a zero label) cannot score any configuration's prediction either.
    """
    classify = "regression" not in objective.tasks
    labels = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        wrong = ~((labels >= 0) & (labels == np.floor(labels)))  # NaN included
    if classify and wrong.any():
        raise CVError(
            f"classification labels must be class indices (whole numbers >= 0), got "
            f"{np.unique(y[wrong])[:5].tolist()} in {int(wrong.sum())} rows; check the "
            "labels fed back"
        )
    if classify and len(np.unique(y)) < 2:
        raise CVError(
            f"a classifier needs >= 2 classes in the training window, got "
            f"{np.unique(y).tolist()}; widen the window"
        )
    width = int(np.max(y)) + 1 if classify else 1
    if width > MAX_CLASSES:  # each prediction would hold a column per class
        raise CVError(
            f"classification labels must be class indices below {MAX_CLASSES}, got "
            f"{width - 1}; check the labels fed back"
        )
    if not classify:
        _check_target(labels)
    if not _varies(np.asarray(x, dtype=np.float64)).any():
        raise CVError(
            f"every feature is constant in the training window ({len(labels)} rows); "
            "check the feature feed"
        )
    for fold, (train, test) in enumerate(scheme.split(x, y, groups=groups, seed=seed)):
        if classify and len(np.unique(y[train])) < 2:
            raise CVError(
                f"training fold {fold} ({len(train)} rows{_rows(train)}) has one class only "
                f"({np.unique(y[train]).tolist()}); use fewer splits or a longer window"
            )
        try:
            objective.loss(y[test], _constant_prediction(y[train], len(test), width, classify))
        except ValueError as exc:  # ObjectiveError, or a label no class column holds
            raise CVError(
                f"objective {objective.name} cannot be computed on test fold {fold} "
                f"({len(test)} rows{_rows(test)}): {exc}; use fewer splits, a longer "
                "window or another objective"
            ) from exc


def _check_target(labels: np.ndarray[Any, Any]) -> None:
    """Refuse a regression target without two finite values (each fold's mean would be
    the best any configuration can answer)."""
    finite = labels[np.isfinite(labels)]
    if len(finite) and finite.min() < finite.max():
        return
    value = float(finite[0]) if len(finite) else float("nan")
    rows = (
        f"all {len(labels)} rows"
        if len(finite) == len(labels)
        else f"all {len(finite)} rows of {len(labels)} with a finite target"
    )
    raise CVError(f"the target is constant ({value} on {rows}); check the labels fed back")


def _varies(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per column of ``x`` (rows by features), whether its finite values differ. NaN is
    left out: the imputer fills it with the column's one other value (mean, median or
    most frequent alike); so is infinity, which no configuration can fit."""
    values = x if x.ndim == 2 else x.reshape(len(x), -1)
    finite = np.isfinite(values)
    high = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
    low = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)
    return np.asarray(high > low)


def _constant_prediction(
    y_train: np.ndarray[Any, Any], n: int, width: int, classify: bool
) -> np.ndarray[Any, Any]:
    """What a model that learnt nothing from ``x`` predicts for ``n`` rows."""
    if not classify:
        return np.full(n, float(np.mean(y_train)))
    labels = np.asarray(y_train, dtype=np.int64)
    shares = np.bincount(labels[(labels >= 0) & (labels < width)], minlength=width)
    return np.tile(shares / max(int(shares.sum()), 1), (n, 1))


def _rows(index: np.ndarray[Any, Any]) -> str:
    """``", first..last"`` of a fold of contiguous rows (a time series'), else nothing."""
    first, last = int(index.min()), int(index.max())
    return f", {first}..{last}" if last - first + 1 == len(index) else ""
