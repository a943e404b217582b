"""Cross-validation: schemes (a family), fold scores with a spread veto, dataset versions."""

from __future__ import annotations

from retune.cv._base import CVScheme, FoldScores, Split, dataset_version
from retune.cv._evaluate import PruningCallback, check_xy, cross_validate, out_of_fold
from retune.cv._grouped import GroupKFoldCV
from retune.cv._kfold import KFoldCV
from retune.cv._nested import (
    NestedCV,
    NestedEstimate,
    NestedSplitError,
    Selector,
    nested_estimate,
)
from retune.cv._stratified import StratifiedKFoldCV
from retune.cv._time_series import TimeSeriesCV

__all__ = [
    "CVScheme",
    "FoldScores",
    "GroupKFoldCV",
    "KFoldCV",
    "NestedCV",
    "NestedEstimate",
    "NestedSplitError",
    "PruningCallback",
    "Selector",
    "Split",
    "StratifiedKFoldCV",
    "TimeSeriesCV",
    "check_xy",
    "cross_validate",
    "dataset_version",
    "nested_estimate",
    "out_of_fold",
]
