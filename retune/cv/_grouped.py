"""Grouped k-fold: all rows of a group (customer, device, session) in one fold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold

from retune._errors import CVError
from retune.cv._base import Split, check_common


@dataclass(frozen=True, kw_only=True)
class GroupKFoldCV:
    n_splits: int = 5
    max_fold_spread: float | None = None
    name: str = "group_kfold"

    def __post_init__(self) -> None:
        check_common(self.n_splits, self.max_fold_spread)

    def split(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None = None,
        seed: int,
    ) -> Iterator[Split]:
        if groups is None:
            raise CVError("group k-fold needs `groups` (one group id per row), got None")
        if len(groups) != len(y):
            raise CVError(f"`groups` has {len(groups)} entries for {len(y)} rows")
        missing = _missing(np.asarray(groups))
        if missing:
            raise CVError(
                f"`groups` has {missing} missing values (NaN or None); every row needs a group id"
            )
        n_groups = len(np.unique(groups))
        if n_groups < self.n_splits:
            raise CVError(
                f"group {self.n_splits}-fold needs >= {self.n_splits} groups, got {n_groups}"
            )
        folds = GroupKFold(n_splits=self.n_splits, shuffle=True, random_state=seed)
        yield from folds.split(x, y, groups)


def _missing(groups: np.ndarray[Any, Any]) -> int:
    """How many of ``groups`` are NaN or None (scikit-learn refuses either)."""
    if groups.dtype.kind in "fc":
        return int(np.isnan(groups).sum())
    if groups.dtype.kind == "O":
        return sum(g is None or (isinstance(g, float) and g != g) for g in groups.tolist())
    return 0
