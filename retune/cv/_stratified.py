"""Stratified k-fold: class shares kept in every fold (i.i.d. rows)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from retune._errors import CVError
from retune.cv._base import Split, check_common


@dataclass(frozen=True, kw_only=True)
class StratifiedKFoldCV:
    n_splits: int = 5
    max_fold_spread: float | None = None
    name: str = "stratified_kfold"

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
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < self.n_splits:
            raise CVError(
                f"stratified {self.n_splits}-fold needs >= {self.n_splits} rows of every "
                f"class, the rarest has {int(counts.min())}"
            )
        folds = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=seed)
        yield from folds.split(x, y)
