"""Scoring one configuration by cross-validation, fitting the whole pipeline per fold."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from monitor.objectives import Objective
from retune._errors import CVError
from retune.cv._base import CVScheme, FoldScores
from retune.space import fit_pipeline, is_regression

logger = logging.getLogger(__name__)

PruningCallback = Callable[[int, float], None]
"""Called after each fold with ``(fold_index, mean loss so far)``; it may raise to stop."""


def check_xy(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> None:
    """Raise :class:`CVError` when ``y`` does not label ``x``'s rows: one number per row.
    A longer ``y`` would fail every fold (every trial of a study) alike and a shorter one
    crash the window's checks; labels that are not numbers (strings) cannot be class
    indices or targets."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise CVError(f"`y` must be one-dimensional, got shape {labels.shape}")
    if len(x) != len(labels):
        raise CVError(f"`x` has {len(x)} rows but `y` has {len(labels)}")
    if labels.dtype.kind not in "biuf":
        raise CVError(f"`y` must hold numbers, got {labels.dtype}; check the labels fed back")


def cross_validate(
    params: Mapping[str, Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    scheme: CVScheme,
    objective: Objective,
    seed: int,
    groups: np.ndarray[Any, Any] | None = None,
    pruning_callback: PruningCallback | None = None,
) -> FoldScores:
    """Per-fold losses (``objective.loss``, lower is better) of the pipeline for ``params``.

    The pipeline (imputation, scaling, selection, estimator) is refitted from scratch
    on each training fold, so nothing is learnt from the test rows. A configuration
    that cannot be fitted or scored raises :class:`CVError`; the spread veto is
    reported in the result (``vetoed``), not raised.
    """
    check_xy(x, y)
    scores: list[float] = []
    for fold, (train, test) in enumerate(scheme.split(x, y, groups=groups, seed=seed)):
        scores.append(_fold_loss(params, x, y, train, test, objective, seed, fold))
        if pruning_callback is not None:
            pruning_callback(fold, float(np.mean(scores)))
    if not scores:
        raise CVError(f"scheme {scheme.name!r} produced no folds")
    return FoldScores.of(tuple(scores), max_fold_spread=scheme.max_fold_spread)


def out_of_fold(
    params: Mapping[str, Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    scheme: CVScheme,
    seed: int,
    groups: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Each row's prediction by the pipeline for ``params`` fitted on the folds that did
    not hold it: a column per class (``0 .. max(y)``) or one for a regressor; NaN for rows
    no test fold held (a time series' first rows). Scores a monitor can calibrate on:
    a model's scores on its own training rows are overconfident."""
    width = 1 if is_regression(params) else int(np.max(y)) + 1
    out = np.full((len(x), width), np.nan)
    for fold, (train, test) in enumerate(scheme.split(x, y, groups=groups, seed=seed)):
        try:
            pipeline = fit_pipeline(params, x[train], y[train], seed=seed)
            out[test] = _predict(pipeline, params, x[test], width)
        except (ValueError, ArithmeticError) as exc:
            raise CVError(
                f"configuration failed on fold {fold}: {type(exc).__name__}: {exc}"
            ) from exc
    return out


def _predict(
    pipeline: Any, params: Mapping[str, Any], x: np.ndarray[Any, Any], width: int
) -> np.ndarray[Any, Any]:
    """A column per class of the whole window, not only those the fold saw."""
    if is_regression(params):
        return np.asarray(pipeline.predict(x), dtype=np.float64).reshape(-1, 1)
    predicted = np.zeros((len(x), width))
    predicted[:, np.asarray(pipeline.classes_, dtype=np.int64)] = pipeline.predict_proba(x)
    return predicted


def _fold_loss(
    params: Mapping[str, Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    train: np.ndarray[Any, Any],
    test: np.ndarray[Any, Any],
    objective: Objective,
    seed: int,
    fold: int,
) -> float:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            pipeline = fit_pipeline(params, x[train], y[train], seed=seed)
            if is_regression(params):
                predicted = pipeline.predict(x[test])
            else:
                predicted = _predict(pipeline, params, x[test], int(np.max(y)) + 1)
            loss = float(objective.loss(y[test], predicted))
        except (ValueError, ArithmeticError) as exc:
            raise CVError(
                f"configuration failed on fold {fold}: {type(exc).__name__}: {exc}"
            ) from exc
    if caught:
        logger.debug("fold %d: %d convergence warning(s) for %s", fold, len(caught), dict(params))
    if not np.isfinite(loss):
        raise CVError(f"configuration scored a non-finite loss ({loss}) on fold {fold}")
    return loss
