"""Forward-chaining time-series CV with a gap: train on the past, test on the future,
leaving ``gap`` rows out between them (labels that mature late, autocorrelation).
Rows must be in time order. Whether each training fold holds two classes is the
task's concern, checked by :func:`retune.run_study` for a classifier only (an early
run of one value is a regression target's, not a failure)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import TimeSeriesSplit

from retune._errors import CVError
from retune.cv._base import Split, check_common, is_count


@dataclass(frozen=True, kw_only=True)
class TimeSeriesCV:
    n_splits: int = 5
    gap: int = 0
    test_size: int | None = None
    max_fold_spread: float | None = None
    name: str = "time_series"

    def __post_init__(self) -> None:
        check_common(self.n_splits, self.max_fold_spread)
        if not is_count(self.gap, at_least=0):
            raise CVError(f"`gap` must be an int >= 0, got {self.gap!r}")
        if self.test_size is not None and not is_count(self.test_size, at_least=1):
            raise CVError(f"`test_size` must be an int >= 1 or None, got {self.test_size!r}")

    def split(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None = None,
        seed: int,
    ) -> Iterator[Split]:
        folds = TimeSeriesSplit(n_splits=self.n_splits, gap=self.gap, test_size=self.test_size)
        try:
            yield from folds.split(x)
        except ValueError as exc:
            raise CVError(f"time-series split impossible: {exc}") from exc
