"""Refit the winning configuration on the whole window and export it with a parity gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from retune._errors import ExportError, RetuneError
from retune._export import check_parity, to_onnx
from retune.space import DEFAULTS, fit_pipeline, is_regression
from shadow import Signature


@dataclass(frozen=True, kw_only=True)
class ExportedModel:
    """The servable artefact of a tuning job."""

    onnx: bytes
    parity_error: float
    pipeline: Pipeline
    params: Mapping[str, Any]
    n_features: int


def refit_and_export(
    best_params: Mapping[str, Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    holdout_fraction: float = 0.2,
    tolerance: float = 1e-4,
    seed: int = 0,
    name: str = "model",
    n_classes: int | None = None,
    like: Signature | None = None,
) -> ExportedModel:
    """Fit ``best_params`` on all of ``(x, y)``, export to ONNX and check parity.

    Parity is checked on a random ``holdout_fraction`` of the window, stratified for a
    classifier whose classes all have two rows or more, when the holdout and the rest
    each have a row for every class (rows the refit has seen, which is fine: parity
    compares two renderings of one model, not generalisation). Raises
    :class:`~retune.ParityError` when ONNX and scikit-learn disagree beyond
    ``tolerance``, :class:`~retune.ExportError` when the refit fails (scikit-learn's
    error, as its cause: labels of one class, a NaN label, a parameter out of range,
    ``y`` of another length than ``x``), when conversion fails or when a
    classifier would not answer one column per class ``0 .. n_classes - 1`` (by default
    as many as it saw): a class missing from the window would shift the columns after it.

    ``like`` is the signature of the version the export may replace: the export takes
    its input name and type, and its output names where the outputs match in type and
    shape (:func:`~retune.to_onnx`); parity is checked through that input. A binary
    classifier replacing a version whose primary output has one column answers P(class 1)
    alone in it, and its parity is checked on ``predict_proba(x)[:, 1:2]``.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"`holdout_fraction` must be in (0, 1), got {holdout_fraction}")
    pipeline = _refit(best_params, x, y, seed=seed)
    if not is_regression(best_params):
        check_classes(np.asarray(pipeline.classes_), n_classes)
    stratify = y if _can_stratify(y, holdout_fraction, best_params) else None
    _, x_holdout = train_test_split(
        x, test_size=holdout_fraction, random_state=seed, stratify=stratify
    )
    onnx_bytes = to_onnx(pipeline, x.shape[1], name=name, like=like)
    parity = check_parity(onnx_bytes, pipeline, np.asarray(x_holdout), tolerance=tolerance)
    return ExportedModel(
        onnx=onnx_bytes,
        parity_error=parity,
        pipeline=pipeline,
        params=dict(best_params),
        n_features=int(x.shape[1]),
    )


def _refit(
    best_params: Mapping[str, Any], x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], *, seed: int
) -> Pipeline:
    """:func:`~retune.space.fit_pipeline`, its scikit-learn errors raised as
    :class:`ExportError` (retune's own, a :class:`~retune.SearchSpaceError`, as they are)."""
    try:
        return fit_pipeline(best_params, x, y, seed=seed)
    except RetuneError:
        raise
    except (ValueError, ArithmeticError) as exc:  # InvalidParameterError is a ValueError
        estimator = best_params.get("estimator", DEFAULTS["estimator"])
        raise ExportError(
            f"the winning configuration ({estimator}) could not be refitted on the training "
            f"window (`x` {len(x)} rows, `y` {len(y)}): {type(exc).__name__}: {exc}"
        ) from exc


def _can_stratify(
    y: np.ndarray[Any, Any], holdout_fraction: float, best_params: Mapping[str, Any]
) -> bool:
    """Whether the parity holdout can be stratified on ``y``: a classifier's, with every
    class of two rows or more, and as many rows in the holdout and in the rest as there
    are classes (the sizes ``train_test_split`` takes: ``ceil(fraction * n)`` held out)."""
    if is_regression(best_params):
        return False
    counts = np.unique(y, return_counts=True)[1]
    n_test = math.ceil(holdout_fraction * len(y))
    return bool(counts.min() >= 2 and min(n_test, len(y) - n_test) >= len(counts))


def check_classes(classes: np.ndarray[Any, Any], n_classes: int | None) -> None:
    """Refuse training labels that are not exactly the classes ``0..n_classes - 1`` (all
    of them: a class missing from the window would leave the export a column short)."""
    expected = np.arange(len(classes) if n_classes is None else n_classes)
    if classes.shape != expected.shape or not np.array_equal(classes, expected):
        missing = sorted(set(expected.tolist()) - set(classes.tolist()))
        unknown = sorted(set(classes.tolist()) - set(expected.tolist()))
        if unknown:
            raise ExportError(
                f"the training window's labels include class(es) {unknown} the model does "
                f"not answer (classes 0..{len(expected) - 1}); check the labels fed back"
            )
        raise ExportError(
            f"the training window has no rows of class(es) {missing} (it has "
            f"{classes.tolist()}): the exported model would answer {len(classes)} "
            f"column{'' if len(classes) == 1 else 's'} for classes 0..{len(expected) - 1}; "
            "widen the training window"
        )
