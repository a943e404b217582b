"""Nested CV: the inner scheme scores configurations (what the tuner sees); the outer
scheme re-runs the whole selection on each outer training part and scores the chosen
configuration on rows the selection never saw — an unbiased estimate of the process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune._errors import CVError
from retune.cv._base import CVScheme, FoldScores, Split
from retune.cv._evaluate import cross_validate

Selector = Callable[
    [np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any] | None],
    Mapping[str, Any],
]
"""``(x_train, y_train, groups_train) -> chosen params`` — e.g. a small tuning run."""


@dataclass(frozen=True, kw_only=True)
class NestedCV:
    outer: CVScheme
    inner: CVScheme
    name: str = "nested"

    @property
    def n_splits(self) -> int:
        return self.inner.n_splits

    @property
    def max_fold_spread(self) -> float | None:
        return self.inner.max_fold_spread

    def split(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None = None,
        seed: int,
    ) -> Iterator[Split]:
        """The inner scheme's folds: what a tuning run on this data scores with."""
        yield from self.inner.split(x, y, groups=groups, seed=seed)

    def check(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None = None,
        seed: int,
    ) -> None:
        """Split ``(x, y)`` as :func:`nested_estimate` will: by the outer scheme, then each
        outer training part by the inner one (the selection tunes on it), so that data
        nested CV cannot use is refused before any tuning, not after the first one. Raises
        :class:`NestedSplitError` naming the part that cannot be split."""
        try:
            outer = list(self.outer.split(x, y, groups=groups, seed=seed))
        except CVError as exc:
            raise NestedSplitError(
                f"the outer {self.outer.name} cannot split the data: {exc}", outer_part=None
            ) from exc
        for k, (train, _) in enumerate(outer):
            g_train = None if groups is None else groups[train]
            try:
                for _ in self.inner.split(x[train], y[train], groups=g_train, seed=seed):
                    pass
            except CVError as exc:
                raise NestedSplitError(
                    f"outer training part {k} ({len(train)} rows) cannot be split by the "
                    f"inner {self.inner.name}: {exc}",
                    outer_part=k,
                ) from exc


class NestedSplitError(CVError):
    """Nested CV cannot split its data: the outer scheme the whole of it
    (``outer_part`` is ``None``), or the inner scheme outer training part ``outer_part``."""

    def __init__(self, message: str, *, outer_part: int | None) -> None:
        super().__init__(message)
        self.outer_part = outer_part


@dataclass(frozen=True, kw_only=True)
class NestedEstimate:
    """Outer-fold losses of the configurations the selection chose on each outer part."""

    outer: FoldScores
    chosen: tuple[Mapping[str, Any], ...]


def nested_estimate(
    select: Selector,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    scheme: NestedCV,
    objective: Objective,
    seed: int,
    groups: np.ndarray[Any, Any] | None = None,
) -> NestedEstimate:
    """Run ``select`` on every outer training part and score its choice on the outer test
    part. Every part is split first (:meth:`NestedCV.check`): one that cannot be raises
    :class:`NestedSplitError` before ``select`` runs on any."""
    scheme.check(x, y, groups=groups, seed=seed)
    scores: list[float] = []
    chosen: list[Mapping[str, Any]] = []
    for train, test in scheme.outer.split(x, y, groups=groups, seed=seed):
        g_train = None if groups is None else groups[train]
        params = dict(select(x[train], y[train], g_train))
        chosen.append(params)
        fold = _HoldoutScheme(train_rows=len(train), test_rows=len(test))
        both = np.concatenate([train, test])
        result = cross_validate(
            params, x[both], y[both], scheme=fold, objective=objective, seed=seed
        )
        scores.append(result.scores[0])
    return NestedEstimate(
        outer=FoldScores.of(tuple(scores), max_fold_spread=None), chosen=tuple(chosen)
    )


@dataclass(frozen=True, kw_only=True)
class _HoldoutScheme:
    """One split: the first ``train_rows`` rows train, the rest test."""

    train_rows: int
    test_rows: int
    name: str = "holdout"
    n_splits: int = 1
    max_fold_spread: float | None = None

    def split(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None = None,
        seed: int,
    ) -> Iterator[Split]:
        yield np.arange(self.train_rows), np.arange(self.train_rows, len(x))
