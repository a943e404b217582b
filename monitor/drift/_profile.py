"""The reference profile: a versioned, serialisable summary of the reference window.

A profile keeps, per column, what the drift methods need and nothing else:

* numeric columns: the non-missing count, mean and standard deviation of the full
  column, a sorted random sample of at most ``max_sample`` values (for KS, Wasserstein
  and histogram-based Jensen-Shannon), population-stability bins fixed at the reference
  deciles with the reference share in each, and the value counts when the column has
  at most :data:`DISCRETE_MAX_VALUES` distinct values (evidently treats such columns as
  discrete);
* categorical columns: the category frequencies. Categories are compared by their text,
  numbers by value (:func:`category_key`): ``1``, ``1.0`` and ``np.int64(1)`` are one
  category, as a column of integer codes reads as floats once pandas meets a missing value.

Columns are named by their text: a frame's column ``0`` is the profile's ``"0"``.

Profiles serialise to a JSON-able dict (:meth:`ReferenceProfile.to_dict`) or to UTF-8
JSON bytes (:meth:`ReferenceProfile.to_bytes`), carrying :data:`FORMAT_VERSION`; loading
a payload written by a newer version raises :class:`ProfileFormatError`.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from monitor._errors import DriftError, ProfileFormatError

FORMAT_VERSION = 2
"""Version written by :meth:`ReferenceProfile.to_dict`; newer payloads are refused.
Format 1 kept a float category as Python's text of it (``"1.0"``); reading one maps such
a category to its number's text (``"1"``)."""

DISCRETE_MAX_VALUES = 20
"""Numeric columns with at most this many distinct values also keep their value counts
(evidently bins such columns by value rather than by histogram)."""

PSI_BINS = 10
"""Population-stability bins: the reference deciles."""

ColumnKind = Literal["num", "cat"]


@dataclass(frozen=True, eq=False, kw_only=True, init=False)
class NumericSummary:
    """Reference summary of a numeric column (missing and infinite values excluded).

    The sample is held as float32 when float32 holds each of its values exactly (a
    model's features: they come from float32 inputs), else as float64; :attr:`sample`
    gives it as float64 either way, the values it was built from. A 1,000-feature
    model's profile held 76 MB of float64 samples, more than its float32 reference rows;
    the float64 copy a reader asks for lives as long as its test of the column."""

    n: int
    n_missing: int
    mean: float
    std: float
    held_sample: np.ndarray
    """The sample as held: float32 when that is exact, else float64 (:attr:`sample`)."""
    psi_edges: tuple[float, ...]
    """Interior bin edges at the reference quantiles (outer bins are open)."""
    psi_shares: tuple[float, ...]
    """Share of the full reference column in each PSI bin (``len(psi_edges) + 1``)."""
    value_counts: tuple[tuple[float, int], ...] | None
    """Counts per distinct value, when the column has few distinct values."""

    kind: ColumnKind = field(default="num", init=False)

    def __init__(
        self,
        *,
        n: int,
        n_missing: int,
        mean: float,
        std: float,
        sample: np.ndarray,
        psi_edges: tuple[float, ...],
        psi_shares: tuple[float, ...],
        value_counts: tuple[tuple[float, int], ...] | None,
    ) -> None:
        for name, value in (
            ("n", n),
            ("n_missing", n_missing),
            ("mean", mean),
            ("std", std),
            ("held_sample", compact_sample(sample)),
            ("psi_edges", psi_edges),
            ("psi_shares", psi_shares),
            ("value_counts", value_counts),
            ("kind", "num"),
        ):
            object.__setattr__(self, name, value)

    @property
    def sample(self) -> np.ndarray:
        """Sorted float64 sample of at most ``max_sample`` reference values (a new array
        when it is held as float32)."""
        return self.held_sample.astype(np.float64, copy=False)

    @property
    def n_distinct(self) -> int | None:
        """Distinct reference values, or ``None`` when there are more than
        :data:`DISCRETE_MAX_VALUES`."""
        return None if self.value_counts is None else len(self.value_counts)


def compact_sample(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) as float32 when float32 holds each exactly, else as float64:
    half the bytes for a column read from float32 inputs, the same values."""
    wide = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):  # past float32's range: not exact
        narrow = wide.astype(np.float32)
    # NaN is never kept (the sample is the finite values); -0.0 stays -0.0
    return narrow if np.array_equal(narrow, wide) else wide


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
    """Finite float64 values of a column-like input (non-numeric entries count as missing),
    in a new array (never a view of ``values``: the caller may sort it in place). A numeric
    array (a float32 column of a matrix included) is converted directly, without pandas'
    copies."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        arr = np.array(values.ravel(), dtype=np.float64)  # a copy, whatever the dtype
        finite = np.isfinite(arr)
        return arr if finite.all() else arr[finite]
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    if series.dtype == bool:
        series = series.astype(np.float64)
    arr = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    copied: np.ndarray = arr[np.isfinite(arr)]  # a boolean index copies, even a view
    return copied


def category_key(value: Any) -> str:
    """A category's text: numbers by value (``1``, ``1.0`` and ``np.int64(1)`` are
    ``"1"``), booleans as ``"True"``/``"False"``, anything else as ``str`` gives it."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < 2**63:
            return str(int(number))
        # the shortest text at the value's own precision: a float32 0.1 is "0.1", as a
        # float64 0.1 is (its float64 repr is "0.10000000149011612")
        return str(value) if isinstance(value, np.floating) else repr(number)
    return str(value)


def category_counts(values: Any) -> dict[str, int]:
    """Category -> count of a column-like input (categories by :func:`category_key`)."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    counts: dict[str, int] = {}
    for key, count in series.value_counts(dropna=True).items():
        if not count:  # unobserved levels of a pandas Categorical
            continue
        name = category_key(key)
        counts[name] = counts.get(name, 0) + int(count)
    return counts


def discrete_counts(sorted_values: np.ndarray, limit: int) -> dict[float, int] | None:
    """Counts per distinct value of a sorted array, or ``None`` past ``limit`` values."""
    if sorted_values.size == 0:
        return {}
    changes = sorted_values[1:] != sorted_values[:-1]
    if np.count_nonzero(changes) + 1 > limit:  # before the positions: a continuous
        return None  # column's are one int64 a value
    starts = np.flatnonzero(np.r_[True, changes])
    counts = np.diff(np.r_[starts, sorted_values.size])
    return {float(sorted_values[s]): int(c) for s, c in zip(starts, counts, strict=True)}


def columns_by_text(columns: pd.Index) -> tuple[dict[str, Any], dict[str, int]]:
    """A frame's columns by their text, and how many columns read as each text."""
    found: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for column in columns:
        name = str(column)
        found.setdefault(name, column)
        seen[name] = seen.get(name, 0) + 1
    return found, seen


def _moments(ordered: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a sorted non-empty array, computed in units of its
    largest magnitude, so values past 1e154 (whose squares overflow) keep both finite."""
    scale = max(abs(float(ordered[0])), abs(float(ordered[-1])))
    if scale <= 1e150:
        return float(ordered.mean()), float(ordered.std())
    unit = ordered / scale
    return float(unit.mean()) * scale, float(unit.std()) * scale


def _deciles(ordered: np.ndarray) -> np.ndarray:
    """The interior PSI edges: deciles of a sorted non-empty array. Past half the largest
    float, the span between two neighbours can overflow and its interpolation give
    -inf; there the deciles are interpolated in units of a power of two near the largest
    magnitude, which scales exactly (but for values so small beside the largest that they
    fall under the smallest normal float), so the edges stay finite and where a decile
    falls on a value the edge is that value."""
    qs = np.linspace(0.0, 1.0, PSI_BINS + 1)[1:-1]
    top = max(abs(float(ordered[0])), abs(float(ordered[-1])))
    if top <= np.finfo(np.float64).max / 2:
        deciles: np.ndarray = np.quantile(ordered, qs)
    else:
        _, exponent = math.frexp(top)
        deciles = np.ldexp(np.quantile(np.ldexp(ordered, -exponent), qs), exponent)
    return deciles


def _summarise_numeric(column: Any, *, max_sample: int, rng: np.random.Generator) -> NumericSummary:
    """``column``'s summary, holding at most two float64 copies of it at once: its finite
    values, sorted in place once the sample is drawn from them in their order."""
    ordered = numeric_values(column)  # a new array: sorted in place below
    n = int(ordered.size)
    # drawn as ``rng.choice(values, ...)`` draws (the positions, then their values)
    sample = (
        np.sort(ordered[rng.choice(n, size=max_sample, replace=False)]) if n > max_sample else None
    )
    ordered.sort()
    if sample is None:
        sample = ordered
    if n:
        edges = np.unique(_deciles(ordered))
        # bin i holds the values with i edges at or below them: of a sorted array, those
        # from the first at or past edge i - 1 up to the first at or past edge i
        bounds = np.searchsorted(ordered, edges, side="left")
        shares = np.diff(np.concatenate(([0], bounds, [n]))) / n
    else:
        edges, shares = np.empty(0), np.ones(1)
    counts = discrete_counts(ordered, DISCRETE_MAX_VALUES)
    mean, std = _moments(ordered) if n else (0.0, 0.0)
    return NumericSummary(
        n=n,
        n_missing=int(len(column) - n),
        mean=mean,
        std=std,
        sample=sample,
        psi_edges=tuple(float(e) for e in edges),
        psi_shares=tuple(float(s) for s in shares),
        value_counts=None if counts is None else tuple(sorted(counts.items())),
    )


def _summarise_categorical(column: Any) -> CategoricalSummary:
    counts = category_counts(column)
    n = sum(counts.values())
    return CategoricalSummary(
        n=n, n_missing=int(len(column) - n), counts=tuple(sorted(counts.items()))
    )


def _shape(values: Any) -> tuple[int, ...]:
    """``values``' shape, read off an array, Series or Categorical without a copy (a
    list's as an object array's: nested lists of one length are 2-D)."""
    shape = getattr(values, "shape", None)
    if shape is None:
        shape = np.asarray(values, dtype=object).shape
    return tuple(int(d) for d in shape)


def _check_max_sample(max_sample: int) -> None:
    if max_sample < 2:
        raise DriftError(f"`max_sample` must be at least 2, got {max_sample}")


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

        ``column_types`` maps each column to profile, by its text, to ``"num"`` or
        ``"cat"``; when ``None`` every column is profiled, numeric dtypes (not bool) as
        ``"num"`` and everything else as ``"cat"``. Numeric samples keep at most
        ``max_sample`` values, drawn without replacement by a generator seeded with
        ``seed``. Two columns whose names read the same (``1`` and ``"1"``) are refused.
        """
        _check_max_sample(max_sample)
        by_text, seen = columns_by_text(frame.columns)
        clashes = sorted(name for name, count in seen.items() if count > 1)
        if clashes:
            raise DriftError(
                f"the frame has {seen[clashes[0]]} columns named {clashes[0]!r}: a profile "
                "names each column by its text"
            )
        return cls._summarise(
            {name: frame[column] for name, column in by_text.items()},
            n_rows=len(frame),
            column_types=column_types,
            max_sample=max_sample,
            seed=seed,
        )

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        *,
        column_types: Mapping[str, ColumnKind] | None = None,
        max_sample: int = 10_000,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Summarise ``columns`` (name -> a 1-D array or ``pd.Series``, all as long), one
        at a time: the profile :meth:`build` makes of a frame of them, without the frame.
        A column of a float32 matrix (``x[:, j]``, a view) is read as is: the reference
        is never copied whole, nor widened to float64 but a column at a time.
        ``column_types``, ``max_sample`` and ``seed`` as :meth:`build` takes them.
        A column that is not 1-D is refused: a ``(3, 2)`` one was read as 6 values of 3
        rows, ``n_missing == -3``."""
        _check_max_sample(max_sample)
        for name, values in columns.items():
            shape = _shape(values)
            if len(shape) != 1:
                raise DriftError(
                    f"column {name!r} must be 1-D (one value per row), got shape {shape}"
                )
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DriftError(f"the columns must be as long as each other, got {lengths}")
        return cls._summarise(
            columns,
            n_rows=next(iter(lengths.values()), 0),
            column_types=column_types,
            max_sample=max_sample,
            seed=seed,
        )

    @classmethod
    def _summarise(
        cls,
        columns: Mapping[str, Any],
        *,
        n_rows: int,
        column_types: Mapping[str, ColumnKind] | None,
        max_sample: int,
        seed: int,
    ) -> ReferenceProfile:
        if column_types is None:
            types: Mapping[str, ColumnKind] = {
                name: (
                    "num"
                    if pd.api.types.is_numeric_dtype(values)
                    and not pd.api.types.is_bool_dtype(values)
                    else "cat"
                )
                for name, values in columns.items()
            }
        else:
            types = column_types
        missing = sorted(set(types) - set(columns))
        if missing:
            raise DriftError(f"`column_types` names columns not in the frame: {missing}")
        rng = np.random.default_rng(seed)
        summaries: dict[str, ColumnSummary] = {}
        for name, kind in types.items():
            values = columns[name]
            if kind == "num":
                summaries[name] = _summarise_numeric(values, max_sample=max_sample, rng=rng)
            elif kind == "cat":
                summaries[name] = _summarise_categorical(values)
            else:
                raise DriftError(
                    f"`column_types[{name!r}]` must be one of 'cat', 'num', got {kind!r}"
                )
        return cls(columns=summaries, n_rows=n_rows, max_sample=max_sample, seed=seed)

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
        raw_columns = data.get("columns")
        if not isinstance(raw_columns, Mapping):
            raise ProfileFormatError(
                f"reference profile (format_version {version}) is malformed: `columns` must "
                f"be an object of column name -> summary, got {type(raw_columns).__name__}",
                found=version,
                supported=FORMAT_VERSION,
            )
        try:
            columns: dict[str, ColumnSummary] = {}
            for name, c in raw_columns.items():
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
                    counts = [(str(k), int(v)) for k, v in c["counts"]]
                    if version < 2:
                        counts = _format_1_categories(counts)
                    columns[name] = CategoricalSummary(
                        n=int(c["n"]),
                        n_missing=int(c["n_missing"]),
                        counts=tuple(sorted(counts)),
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


_FLOAT_TEXT = re.compile(r"-?(?:\d+\.\d*(?:e[+-]\d+)?|\d+e[+-]\d+|inf|nan)")


def _format_1_categories(counts: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Format 1's categories under format 2's keys: a float category was kept as Python's
    text of it (``"1.0"``, ``"1e+16"``), now as its :func:`category_key`. A text category
    that reads like a float is read as one too: format 1 did not say which it was."""
    merged: dict[str, int] = {}
    for key, count in counts:
        if _FLOAT_TEXT.fullmatch(key):
            key = category_key(float(key))
        merged[key] = merged.get(key, 0) + count
    return list(merged.items())
