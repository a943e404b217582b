"""The three preprocessing steps scikit-learn lacks in a convertible form.

All are plain scikit-learn transformers; their ONNX converters are registered in
:mod:`retune._export` (skl2onnx has none for ``MissingIndicator``,
``SimpleImputer(add_indicator=True)`` mis-shapes the graph, and its ``SelectKBest``
converter writes an invalid graph when the one kept column is column 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectKBest
from sklearn.utils.validation import check_is_fitted, validate_data


class SparseColumnDropper(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Drop columns whose share of missing values in the training data exceeds
    ``max_missing_share``; at least the least-missing column is always kept."""

    def __init__(self, max_missing_share: float = 0.5) -> None:
        self.max_missing_share = max_missing_share

    def fit(self, x: Any, y: Any = None) -> SparseColumnDropper:
        if not 0.0 <= self.max_missing_share <= 1.0:
            raise ValueError(f"`max_missing_share` must be in [0, 1], got {self.max_missing_share}")
        arr = validate_data(self, x, ensure_all_finite="allow-nan", dtype=np.float64)
        share = np.isnan(arr).mean(axis=0)
        keep = np.flatnonzero(share <= self.max_missing_share)
        if keep.size == 0:
            keep = np.array([int(np.argmin(share))])
        self.keep_ = keep.astype(np.int64)
        return self

    def transform(self, x: Any) -> Any:
        check_is_fitted(self, "keep_")
        arr = validate_data(self, x, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)
        return arr[:, self.keep_]


class MissingIndicatorAppender(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Append one 0/1 "was missing" column per input column (before imputation)."""

    def fit(self, x: Any, y: Any = None) -> MissingIndicatorAppender:
        validate_data(self, x, ensure_all_finite="allow-nan", dtype=np.float64)
        return self

    def transform(self, x: Any) -> Any:
        check_is_fitted(self, "n_features_in_")
        arr = validate_data(self, x, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)
        return np.hstack([arr, np.isnan(arr).astype(np.float64)])


class KBestColumnSelector(SelectKBest):  # type: ignore[misc]
    """``SelectKBest`` itself (same scores, same kept columns), under its own class so
    that its ONNX converter is ours: a ``Gather`` of the kept column indices.

    skl2onnx's converter tests ``indices.any()`` to tell "no column kept", so a selector
    keeping only column 0 (``select_k: 1`` with the best column first, a one-feature
    model, ``drop_columns`` leaving one column) became a ``ConstantOfShape`` of the float
    input, which onnxruntime refuses to load.
    """
