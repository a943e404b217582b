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
from retune.cv._window import _constant_prediction, check_window

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
        objective: Objective | None = None,
    ) -> None:
        """Split ``(x, y)`` as :func:`nested_estimate` will: by the outer scheme, then each
        outer training part by the inner one (the selection tunes on it), so that data
        nested CV cannot use is refused before any tuning, not after the first one.

        With ``objective``, each outer part is also checked as a window is before a
        study (:func:`~retune.cv._window.check_window`): its training part with the inner
        scheme (a training fold of one class fails every trial of the part's tuning),
        and its test part under ``objective`` (ROC AUC of a part of one class cannot
        score the chosen configuration). Raises :class:`NestedSplitError` naming the
        part."""
        try:
            outer = list(self.outer.split(x, y, groups=groups, seed=seed))
        except CVError as exc:
            raise NestedSplitError(
                f"the outer {self.outer.name} cannot split the data: {exc}", outer_part=None
            ) from exc
        for k, (train, test) in enumerate(outer):
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
            if objective is not None:
                self._check_part(k, x, y, train, test, g_train, objective, seed)

    def _check_part(
        self,
        k: int,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        train: np.ndarray[Any, Any],
        test: np.ndarray[Any, Any],
        g_train: np.ndarray[Any, Any] | None,
        objective: Objective,
        seed: int,
    ) -> None:
        """Outer part ``k`` can be tuned (its training part, with the inner scheme) and
        its choice scored (its test part, under ``objective``), as far as a prediction
        that learnt nothing from ``x`` tells."""
        try:
            check_window(
                x[train],
                y[train],
                scheme=self.inner,
                objective=objective,
                seed=seed,
                groups=g_train,
            )
        except CVError as exc:
            raise NestedSplitError(
                f"outer training part {k} ({len(train)} rows) cannot be tuned with the "
                f"inner {self.inner.name}: {exc}",
                outer_part=k,
            ) from exc
        classify = "regression" not in objective.tasks
        width = int(np.max(y)) + 1 if classify else 1  # check_window's, over the window
        constant = _constant_prediction(y[train], len(test), width, classify)
        try:
            objective.loss(y[test], constant)
        except ValueError as exc:  # ObjectiveError, or a label no class column holds
            raise NestedSplitError(
                f"objective {objective.name} cannot be computed on outer test part {k} "
                f"({len(test)} rows): {exc}",
                outer_part=k,
                test_part=True,
            ) from exc


class NestedSplitError(CVError):
    """Nested CV cannot use its data: the outer scheme cannot split the whole of it
    (``outer_part`` is ``None``), or outer part ``outer_part`` cannot be split, tuned
    or, with ``test_part`` set, scored by the objective on its test part."""

    def __init__(self, message: str, *, outer_part: int | None, test_part: bool = False) -> None:
        super().__init__(message)
        self.outer_part = outer_part
        self.test_part = test_part


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
    part. Every part is checked first (:meth:`NestedCV.check` with ``objective``): one
    that cannot be split, tuned or scored raises :class:`NestedSplitError` before
    ``select`` runs on any."""
    scheme.check(x, y, groups=groups, seed=seed, objective=objective)
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
