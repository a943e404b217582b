"""The reference profile: a versioned, serialisable summary of the reference window.

A profile keeps, per column, what the drift methods need and nothing else:

* numeric columns: the non-missing count, mean and standard deviation of the full
  column, a sorted random sample of at most ``max_sample`` values (for KS, Wasserstein
  and histogram-based Jensen-Shannon), population-stability bins fixed at the reference
  deciles with the reference share in each, and the value counts when the column has
  at most :data:`DISCRETE_MAX_VALUES` distinct values (evidently treats such columns as
  discrete);
* categorical columns: the category frequencies (categories are compared as strings).

Profiles serialise to a JSON-able dict (:meth:`ReferenceProfile.to_dict`) or to UTF-8
JSON bytes (:meth:`ReferenceProfile.to_bytes`), carrying :data:`FORMAT_VERSION`; loading
a payload written by a newer version raises :class:`ProfileFormatError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from monitor._errors import DriftError, ProfileFormatError

FORMAT_VERSION = 1
"""Version written by :meth:`ReferenceProfile.to_dict`; newer payloads are refused."""

DISCRETE_MAX_VALUES = 20
"""Numeric columns with at most this many distinct values also keep their value counts
(evidently bins such columns by value rather than by histogram)."""

PSI_BINS = 10
"""Population-stability bins: the reference deciles."""

ColumnKind = Literal["num", "cat"]


@dataclass(frozen=True, eq=False, kw_only=True)
class NumericSummary:
    """Reference summary of a numeric column (missing and infinite values excluded)."""

    n: int
    n_missing: int
    mean: float
    std: float
    sample: np.ndarray
    """Sorted float64 sample of at most ``max_sample`` reference values."""
    psi_edges: tuple[float, ...]
    """Interior bin edges at the reference quantiles (outer bins are open)."""
    psi_shares: tuple[float, ...]
    """Share of the full reference column in each PSI bin (``len(psi_edges) + 1``)."""
    value_counts: tuple[tuple[float, int], ...] | None
    """Counts per distinct value, when the column has few distinct values."""

    kind: ColumnKind = field(default="num", init=False)

    @property
    def n_distinct(self) -> int | None:
        """Distinct reference values, or ``None`` when there are more than
        :data:`DISCRETE_MAX_VALUES`."""
        return None if self.value_counts is None else len(self.value_counts)


@dataclass(frozen=True, eq=False, kw_only=True)
class CategoricalSummary:
    """Reference frequencies of a categorical column (missing values excluded)."""

    n: int
    n_missing: int
    counts: tuple[tuple[str, int], ...]
    """``(category, count)`` pairs sorted by category."""

    kind: ColumnKind = field(default="cat", init=False)


ColumnSummary: TypeAlias = NumericSummary | CategoricalSummary


def numeric_values(values: Any) -> np.ndarray:
    """Finite float64 values of a column-like input (non-numeric entries count as missing)."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    if series.dtype == bool:
        series = series.astype(np.float64)
    arr = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite: np.ndarray = arr[np.isfinite(arr)]
    return finite


def category_counts(values: Any) -> dict[str, int]:
    """Category -> count of a column-like input; categories are compared as strings."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    counts: dict[str, int] = {}
    for key, count in series.value_counts(dropna=True).items():
        if not count:  # unobserved levels of a pandas Categorical
            continue
        name = str(key)
        counts[name] = counts.get(name, 0) + int(count)
    return counts


def discrete_counts(sorted_values: np.ndarray, limit: int) -> dict[float, int] | None:
    """Counts per distinct value of a sorted array, or ``None`` past ``limit`` values."""
    if sorted_values.size == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    if starts.size > limit:
        return None
    counts = np.diff(np.r_[starts, sorted_values.size])
    return {float(sorted_values[s]): int(c) for s, c in zip(starts, counts, strict=True)}


def _summarise_numeric(
    column: pd.Series, *, max_sample: int, rng: np.random.Generator
) -> NumericSummary:
    values = numeric_values(column)
    n = int(values.size)
    ordered = np.sort(values)
    if n > max_sample:
        sample = np.sort(rng.choice(values, size=max_sample, replace=False))
    else:
        sample = ordered
    if n:
        qs = np.quantile(ordered, np.linspace(0.0, 1.0, PSI_BINS + 1)[1:-1])
        edges = np.unique(qs)
        idx = np.searchsorted(edges, ordered, side="right")
        shares = np.bincount(idx, minlength=edges.size + 1) / n
    else:
        edges, shares = np.empty(0), np.ones(1)
    counts = discrete_counts(ordered, DISCRETE_MAX_VALUES)
    return NumericSummary(
        n=n,
        n_missing=int(len(column) - n),
        mean=float(ordered.mean()) if n else 0.0,
        std=float(ordered.std()) if n else 0.0,
        sample=sample,
        psi_edges=tuple(float(e) for e in edges),
        psi_shares=tuple(float(s) for s in shares),
        value_counts=None if counts is None else tuple(sorted(counts.items())),
    )


def _summarise_categorical(column: pd.Series) -> CategoricalSummary:
    counts = category_counts(column)
    n = sum(counts.values())
    return CategoricalSummary(
        n=n, n_missing=int(len(column) - n), counts=tuple(sorted(counts.items()))
    )


@dataclass(frozen=True, eq=False, kw_only=True)
class ReferenceProfile:
    """Per-column summary of a reference window; build it with :meth:`build`."""

    columns: Mapping[str, ColumnSummary]
    n_rows: int
    max_sample: int
    seed: int
    format_version: int = FORMAT_VERSION

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        *,
        column_types: Mapping[str, ColumnKind] | None = None,
        max_sample: int = 10_000,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Summarise ``frame``.

        ``column_types`` maps each column to profile to ``"num"`` or ``"cat"``; when
        ``None`` every column is profiled, numeric dtypes (not bool) as ``"num"`` and
        everything else as ``"cat"``. Numeric samples keep at most ``max_sample`` values,
        drawn without replacement by a generator seeded with ``seed``.
        """
        if max_sample < 2:
            raise DriftError(f"`max_sample` must be at least 2, got {max_sample}")
        if column_types is None:
            types: Mapping[str, ColumnKind] = {
                str(name): (
                    "num"
                    if pd.api.types.is_numeric_dtype(frame[name])
                    and not pd.api.types.is_bool_dtype(frame[name])
                    else "cat"
                )
                for name in frame.columns
            }
        else:
            types = column_types
        missing = sorted(set(types) - {str(c) for c in frame.columns})
        if missing:
            raise DriftError(f"`column_types` names columns not in the frame: {missing}")
        rng = np.random.default_rng(seed)
        columns: dict[str, ColumnSummary] = {}
        for name, kind in types.items():
            if kind == "num":
                columns[name] = _summarise_numeric(frame[name], max_sample=max_sample, rng=rng)
            elif kind == "cat":
                columns[name] = _summarise_categorical(frame[name])
            else:
                raise DriftError(
                    f"`column_types[{name!r}]` must be one of 'cat', 'num', got {kind!r}"
                )
        return cls(columns=columns, n_rows=len(frame), max_sample=max_sample, seed=seed)

    @property
    def column_types(self) -> dict[str, ColumnKind]:
        return {name: summary.kind for name, summary in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (numeric samples are base64 little-endian float64)."""
        columns: dict[str, Any] = {}
        for name, s in self.columns.items():
            if isinstance(s, NumericSummary):
                columns[name] = {
                    "kind": "num",
                    "n": s.n,
                    "n_missing": s.n_missing,
                    "mean": s.mean,
                    "std": s.std,
                    "sample": base64.b64encode(s.sample.astype("<f8").tobytes()).decode("ascii"),
                    "psi_edges": list(s.psi_edges),
                    "psi_shares": list(s.psi_shares),
                    "value_counts": (
                        None if s.value_counts is None else [list(kv) for kv in s.value_counts]
                    ),
                }
            else:
                columns[name] = {
                    "kind": "cat",
                    "n": s.n,
                    "n_missing": s.n_missing,
                    "counts": [list(kv) for kv in s.counts],
                }
        return {
            "format_version": self.format_version,
            "n_rows": self.n_rows,
            "max_sample": self.max_sample,
            "seed": self.seed,
            "columns": columns,
        }

    def to_bytes(self) -> bytes:
        """UTF-8 JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> ReferenceProfile:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileFormatError(
                f"reference profile is not valid JSON: {exc}", found=None, supported=FORMAT_VERSION
            ) from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Load a dict written by :meth:`to_dict`; refuses newer format versions."""
        version = data.get("format_version") if isinstance(data, Mapping) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise ProfileFormatError(
                f"reference profile has no integer `format_version` (got {version!r})",
                found=None,
                supported=FORMAT_VERSION,
            )
        if version > FORMAT_VERSION:
            raise ProfileFormatError(
                f"reference profile has `format_version` {version}, newer than the "
                f"{FORMAT_VERSION} this tunewatch reads; upgrade tunewatch or rebuild the "
                "profile from the reference window",
                found=version,
                supported=FORMAT_VERSION,
            )
        try:
            columns: dict[str, ColumnSummary] = {}
            for name, c in data["columns"].items():
                if c["kind"] == "num":
                    raw = base64.b64decode(c["sample"], validate=True)
                    vc = c["value_counts"]
                    columns[name] = NumericSummary(
                        n=int(c["n"]),
                        n_missing=int(c["n_missing"]),
                        mean=float(c["mean"]),
                        std=float(c["std"]),
                        sample=np.frombuffer(raw, dtype="<f8").astype(np.float64),
                        psi_edges=tuple(float(e) for e in c["psi_edges"]),
                        psi_shares=tuple(float(s) for s in c["psi_shares"]),
                        value_counts=(
                            None if vc is None else tuple((float(k), int(v)) for k, v in vc)
                        ),
                    )
                elif c["kind"] == "cat":
                    columns[name] = CategoricalSummary(
                        n=int(c["n"]),
                        n_missing=int(c["n_missing"]),
                        counts=tuple((str(k), int(v)) for k, v in c["counts"]),
                    )
                else:
                    raise ValueError(f"column {name!r} has unknown kind {c['kind']!r}")
            return cls(
                columns=columns,
                n_rows=int(data["n_rows"]),
                max_sample=int(data["max_sample"]),
                seed=int(data["seed"]),
                format_version=FORMAT_VERSION,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileFormatError(
                f"reference profile (format_version {version}) is malformed: {exc!r}",
                found=version,
                supported=FORMAT_VERSION,
            ) from exc
