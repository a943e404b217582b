"""Shuffled k-fold: i.i.d. rows without classes to stratify by (a regression target)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from retune._errors import CVError
from retune.cv._base import Split, check_common


@dataclass(frozen=True, kw_only=True)
class KFoldCV:
    n_splits: int = 5
    max_fold_spread: float | None = None
    name: str = "kfold"

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
        if len(y) < self.n_splits:
            raise CVError(f"{self.n_splits}-fold needs >= {self.n_splits} rows, got {len(y)}")
        folds = KFold(n_splits=self.n_splits, shuffle=True, random_state=seed)
        yield from folds.split(x)
