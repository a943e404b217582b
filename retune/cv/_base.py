"""The CV-scheme interface, fold scores and the dataset version.

A scheme only says which rows train and which rows test; the Pipeline built from the
parameters is fitted inside each training fold, so preprocessing never sees the test
rows (see :func:`retune.cv.cross_validate`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from retune._errors import CVError

Split = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@runtime_checkable
class CVScheme(Protocol):
    """A cross-validation scheme: yields ``(train_rows, test_rows)`` index arrays."""

    @property
    def name(self) -> str: ...

    @property
    def n_splits(self) -> int: ...

    @property
    def max_fold_spread(self) -> float | None: ...

    def split(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        groups: np.ndarray[Any, Any] | None,
        seed: int,
    ) -> Iterator[Split]: ...


@dataclass(frozen=True, kw_only=True)
class FoldScores:
    """Per-fold losses (lower is better) of one configuration.

    ``spread`` is ``max - min`` over the folds; ``vetoed`` is set when it exceeds the
    scheme's ``max_fold_spread`` (an unstable configuration, scored as failed).
    """

    scores: tuple[float, ...]
    mean: float
    std: float
    spread: float
    vetoed: bool = False

    @classmethod
    def of(cls, scores: tuple[float, ...], *, max_fold_spread: float | None) -> FoldScores:
        arr = np.asarray(scores, dtype=np.float64)
        spread = float(arr.max() - arr.min())
        return cls(
            scores=scores,
            mean=float(arr.mean()),
            std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            spread=spread,
            vetoed=max_fold_spread is not None and spread > max_fold_spread,
        )


def dataset_version(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Content hash of a training window: ``"sha256:<hex>"`` over shapes, dtypes and
    bytes of ``x`` and ``y`` and the canonical JSON of ``extra`` (e.g. the query)."""
    digest = hashlib.sha256()
    for arr in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    if extra is not None:
        digest.update(json.dumps(dict(extra), sort_keys=True, default=str).encode())
    return f"sha256:{digest.hexdigest()}"


def check_common(n_splits: int, max_fold_spread: float | None) -> None:
    if not is_count(n_splits, at_least=2):
        raise CVError(f"`n_splits` must be an int >= 2, got {n_splits!r}")
    if max_fold_spread is not None and not max_fold_spread > 0:
        raise CVError(f"`max_fold_spread` must be > 0 or None, got {max_fold_spread}")


def is_count(value: object, *, at_least: int) -> bool:
    """Whether ``value`` is a whole number (a Python or NumPy int, not a bool) ``>= at_least``."""
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool | np.bool_)
        and int(value) >= at_least
    )
