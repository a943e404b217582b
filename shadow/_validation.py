"""Validation of a decoded request batch against a model :class:`~shadow.Signature`.

onnxruntime accepts NaN and ±Inf silently (converted trees then return plausible but
wrong probabilities), overflows float64 values beyond float32 range to inf, and
answers an empty batch with an empty output. So nothing reaches a session before
:func:`validate_batch` has checked it. Everything is vectorised numpy; at batch 1 the
whole check costs a few microseconds.

Overflow choice: a float64 value that is finite in the request but beyond the model
dtype's range (e.g. ``1e39`` for a float32 model) is reported as ``out_of_range``, not
``non_finite`` — the client sent a finite number, the model cannot represent it. A model
taking float64 is held to float32's range all the same: rows are recorded as float32 and
handed to challengers that may take float32, where such a value would become inf. For
the same reason :func:`check_output` refuses a primary output float32 cannot hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from shadow._errors import InvalidInputError, ShadowError
from shadow._onnx import Signature

_RANGE_CACHE_MAX: Final[int] = 256
_FLOAT32_MAX: Final[float] = float(np.finfo(np.float32).max)
# (id(tuple of ranges), dtype) -> (that tuple, lows, highs). The tuple is held so its id
# stays unique while cached; only tuples (immutable, of frozen FeatureRange) are cached.
_range_cache: dict[
    tuple[int, np.dtype[Any]],
    tuple[tuple[FeatureRange | None, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]],
] = {}


@dataclass(frozen=True, slots=True, kw_only=False)
class FeatureRange:
    """Inclusive bounds for one feature; ``None`` leaves that side open."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for side in ("low", "high"):
            value = getattr(self, side)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"`{side}` must be a finite number or None, got {value!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"`low` must be <= `high`, got low={self.low}, high={self.high}")

    def __str__(self) -> str:
        low = "-inf" if self.low is None else repr(self.low)
        high = "inf" if self.high is None else repr(self.high)
        return f"[{low}, {high}]"


def _bounds(
    ranges: Sequence[FeatureRange | None], n_features: int, dtype: np.dtype[Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Lows and highs of ``ranges`` (infinite where open) rounded to ``dtype``, the
    model's floating-point input type, or float64 for an integer input."""
    key = (id(ranges), dtype)
    cached = _range_cache.get(key)
    if cached is not None and cached[0] is ranges:
        return cached[1], cached[2]
    if len(ranges) != n_features:
        raise ValueError(
            f"`ranges` must have one entry per feature ({n_features}), got {len(ranges)}"
        )
    lows = np.array(
        [-np.inf if r is None or r.low is None else r.low for r in ranges], dtype=np.float64
    )
    highs = np.array(
        [np.inf if r is None or r.high is None else r.high for r in ranges], dtype=np.float64
    )
    if dtype.kind == "f" and dtype != lows.dtype:
        with np.errstate(over="ignore"):  # a bound past a float16's range: inf, as it acts
            lows, highs = lows.astype(dtype), highs.astype(dtype)
    if isinstance(ranges, tuple):
        if len(_range_cache) >= _RANGE_CACHE_MAX:
            _range_cache.clear()
        _range_cache[key] = (ranges, lows, highs)
    return lows, highs


def _first(mask: np.ndarray[Any, Any]) -> tuple[int, int]:
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def validate_batch(
    x: np.ndarray[Any, Any],
    signature: Signature,
    *,
    max_rows: int,
    ranges: Sequence[FeatureRange | None] | None = None,
) -> np.ndarray[Any, Any]:
    """Check ``x`` against ``signature`` and return it as a C-contiguous array of the
    model's input dtype.

    Checks, in order, each raising :class:`~shadow.InvalidInputError` with its code:
    numeric dtype (``dtype_mismatch``: bool, strings, objects, complex), rank 2 with the
    model's feature count (``shape_mismatch``), at least one row (``empty_batch``), at
    most ``max_rows`` rows (``batch_too_large``), finite values (``non_finite``),
    representable in the model's dtype and, for a dtype wider than float32, in float32
    (``out_of_range``: rows are recorded and shadowed as float32; for integer inputs a
    fractional value is ``dtype_mismatch``), and within ``ranges`` — one
    :class:`FeatureRange` or ``None`` per feature (``out_of_range``). Pass ``ranges`` as
    a tuple to have its bounds cached between calls.

    For a floating-point input the range check compares the values as the model gets
    them with the bounds rounded to the model's dtype, or to the input's where that is
    narrower (an FP32 tensor sent to a float64 model): a value whose float32 is a
    bound's float32 passes, whether it came as float32 (an OIP binary tensor) or float64
    (JSON). Compared in float64, an FP32 0.99 (0.9900000095…) was refused against a
    bound of 0.99 that the same value sent as JSON passed.
    """
    spec = signature.input
    kind = x.dtype.kind
    if kind not in "fiu":
        raise InvalidInputError(
            f"input {spec.name!r} must be numeric ({spec.dtype}), got dtype {x.dtype}",
            code="dtype_mismatch",
        )
    n_features = signature.n_features
    if x.ndim != 2 or x.shape[1] != n_features:
        raise InvalidInputError(
            f"input {spec.name!r} must have shape [N, {n_features}], got {_shape_text(x.shape)}",
            code="shape_mismatch",
        )
    rows = x.shape[0]
    if rows < 1:
        raise InvalidInputError(
            f"input {spec.name!r} must have at least 1 row, got 0", code="empty_batch"
        )
    if rows > max_rows:
        raise InvalidInputError(
            f"input {spec.name!r} must have at most {max_rows} rows, got {rows}",
            code="batch_too_large",
        )
    target = spec.dtype
    if kind == "f":
        # One reduction answers both questions: max |x| is NaN/inf iff some value is
        # non-finite, and above the target's max iff the down-cast would overflow.
        peak = _peak(x)
        if not math.isfinite(peak):
            row, col = _first(~np.isfinite(x))
            raise InvalidInputError(
                f"input {spec.name!r} must be finite, got {x[row, col]} at row {row}, column {col}",
                code="non_finite",
            )
        if target != x.dtype and (target.kind != "f" or peak > _float_max(target)):
            _check_representable(x, target, spec.name)
        if peak > _FLOAT32_MAX:  # only a target wider than float32 gets here
            row, col = _first(np.abs(x) > _FLOAT32_MAX)
            raise InvalidInputError(
                f"input {spec.name!r} value {x[row, col]} at row {row}, column {col} is beyond "
                f"float32's range (max abs {_FLOAT32_MAX:.6g}), in which requests are recorded "
                "and shadowed",
                code="out_of_range",
            )
    elif target != x.dtype:
        _check_representable(x, target, spec.name)
    out = np.ascontiguousarray(x, dtype=target)

    if ranges is not None:
        # a float input is compared in the narrower of its type and the model's: the
        # model (float32) or the client (an FP32 tensor to a float64 model) rounded it so
        compared, values = target, out
        if target.kind != "f":
            values = x  # an integer's cast is exact
        elif x.dtype.kind == "f" and x.dtype.itemsize < target.itemsize:
            compared, values = x.dtype, x
        lows, highs = _bounds(ranges, n_features, compared)
        bad = (values < lows) | (values > highs)
        if bad.any():
            row, col = _first(bad)
            raise InvalidInputError(
                f"feature {col} must be in {ranges[col]}, got {x[row, col]} at row {row}",
                code="out_of_range",
            )
    return out


def _peak(x: np.ndarray[Any, Any]) -> float:
    """``max |x|`` of floats ``x``: NaN or infinite when some value is not finite."""
    if x.size <= 64:  # a request of a row or a few: Python's loop beats two ufuncs
        values = x.ravel().tolist()
        if math.isfinite(sum(values)):  # every value finite (an overflowing sum is not)
            return float(max(map(abs, values)))
    return float(np.abs(x).max())


_FLOAT_MAX: dict[np.dtype[Any], float] = {}


def _float_max(dtype: np.dtype[Any]) -> float:
    """``np.finfo(dtype).max``, looked up once per dtype (``np.finfo`` is slow per call)."""
    limit = _FLOAT_MAX.get(dtype)
    if limit is None:
        limit = _FLOAT_MAX[dtype] = float(np.finfo(dtype).max)
    return limit


def _fractional(x: np.ndarray[Any, Any], target: np.dtype[Any]) -> np.ndarray[Any, Any] | None:
    """Where floats ``x`` hold a fraction (or NaN) an integer ``target`` cannot; ``None``
    when ``target`` is a float type or ``x`` integers."""
    if target.kind == "f" or x.dtype.kind != "f":
        return None
    return np.asarray(x != np.trunc(x))


def _outside(x: np.ndarray[Any, Any], target: np.dtype[Any]) -> np.ndarray[Any, Any] | None:
    """Where finite ``x`` is beyond ``target``'s range; ``None`` when no value can be (a
    float cast to a float type as wide or wider)."""
    if target.kind == "f":
        if x.dtype.kind == "f" and x.dtype.itemsize <= target.itemsize:
            return None
        limit = float(np.finfo(target).max)
        return np.asarray((x > limit) | (x < -limit))
    info = np.iinfo(target)
    if x.dtype.kind == "f":
        # The max (2**63 - 1, ...) rounds up to max + 1 as a float, which would pass
        # ``x > max`` and wrap in the cast: bound by max + 1, a power of two, exclusively.
        # The min (0 or -2**(bits - 1)) is exact.
        return np.asarray((x < info.min) | (x >= 2.0 ** (info.bits - (target.kind == "i"))))
    return np.asarray((x < info.min) | (x > info.max))


def _check_representable(x: np.ndarray[Any, Any], target: np.dtype[Any], name: str) -> None:
    """Refuse values that a cast of finite ``x`` to ``target`` would not preserve.

    Runs before the cast, so numpy never warns about an overflowing cast.
    """
    fractional = _fractional(x, target)
    if fractional is not None and fractional.any():
        row, col = _first(fractional)
        raise InvalidInputError(
            f"input {name!r} must hold integers ({target}), got {x[row, col]} "
            f"at row {row}, column {col}",
            code="dtype_mismatch",
        )
    outside = _outside(x, target)
    if outside is None or not outside.any():
        return
    row, col = _first(outside)
    if target.kind == "f":
        limit = float(np.finfo(target).max)
        raise InvalidInputError(
            f"input {name!r} value {x[row, col]} at row {row}, column {col} is beyond "
            f"the range of the model's {target} (max abs {limit:.6g})",
            code="out_of_range",
        )
    info = np.iinfo(target)
    raise InvalidInputError(
        f"input {name!r} value {x[row, col]} at row {row}, column {col} is outside "
        f"the range of the model's {target} [{info.min}, {info.max}]",
        code="out_of_range",
    )


def representable_rows(x: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Which rows of ``x`` :func:`cast_rows` casts to ``dtype`` rather than refuses (NaN
    kept by a float type; an integer type holds no NaN or fraction)."""
    keep = np.ones(x.shape[0], dtype=bool)
    for bad in (_fractional(x, dtype), _outside(x, dtype)):
        if bad is not None:
            keep &= ~bad.any(axis=1)
    return keep


def cast_rows(x: np.ndarray[Any, Any], dtype: np.dtype[Any], name: str) -> np.ndarray[Any, Any]:
    """Rows validated against one signature, cast to another version's input ``dtype``
    (a shadow's, a split arm's): ``InvalidInputError`` (``out_of_range``) for a value the
    cast would change, as that version's own route refuses it. A float32 70000 cast to a
    float16 input was inf, which the version then scored."""
    if x.dtype == dtype:
        return x
    _check_representable(x, dtype, name)
    return x.astype(dtype)


def check_other_outputs(outputs: Mapping[str, np.ndarray[Any, Any]], primary: str) -> None:
    """Refuse a NaN or infinity in any float output besides ``primary`` (which
    :func:`check_output` checks): the inference route refuses it in the champion's answer
    (422 ``non_finite_output``), so a challenger's shadow run giving one failed too —
    counted as such, where it used to be recorded and the failure seen only once the
    challenger was champion. Every output is checked, asked for by the client or not."""
    for name, values in outputs.items():
        if name == primary or values.dtype.kind != "f" or values.size == 0:
            continue
        if not np.isfinite(values).all():
            raise ShadowError(
                f"the model produced non-finite values in output {name!r}",
                code="non_finite_output",
            )


def check_output(values: np.ndarray[Any, Any], name: str) -> None:
    """Refuse a model's output ``values`` (named ``name``) that float32 cannot hold.

    The primary output is recorded, and compared between versions, as float32: a NaN or
    infinity (code ``non_finite_output``) or a float64 value past float32's range
    (``output_out_of_range``, which the cast would make infinite) raises
    :class:`~shadow.ShadowError` instead. Call it before the cast, which would warn.
    """
    if values.dtype.kind != "f" or values.size == 0:
        return
    if values.size <= 64:  # the hot path's primary output (a row or a few): no ufuncs
        if all(-_FLOAT32_MAX <= v <= _FLOAT32_MAX for v in values.ravel().tolist()):
            return  # (NaN fails both comparisons)
    else:
        peak = np.abs(values).max()
        if math.isfinite(peak) and peak <= _FLOAT32_MAX:
            return
    finite = np.isfinite(values)
    if not finite.all():
        where = np.argwhere(~finite)[0]
        raise ShadowError(
            f"the model produced non-finite values in output {name!r}: "
            f"{values[tuple(where)]} at index {where.tolist()}",
            code="non_finite_output",
        )
    over = np.abs(values) > _FLOAT32_MAX
    if not over.any():
        return
    where = np.argwhere(over)[0]
    raise ShadowError(
        f"the model's output {name!r} value {values[tuple(where)]} at index {where.tolist()} "
        f"is beyond float32's range (max abs {_FLOAT32_MAX:.6g}), in which outputs are recorded",
        code="output_out_of_range",
    )
