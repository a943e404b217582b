"""Parameter declarations of a search space: int, float and categorical, with safe ranges.

A categorical parameter may carry ``when``: child parameters that exist only while
one of the listed choices is picked (``"random_forest|extra_trees"`` shares one block
between two choices). Safe ranges are what promotion may deploy without an approver.
"""

from __future__ import annotations

import decimal
import itertools
import math
import re
import reprlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

Choice = str | int | float | bool

#: The largest magnitude of an integer in a space (a bound, a step, a safe range, a
#: numeric choice): samplers draw, and study storages keep, numbers as floats, exact up to
#: 2**53; past the float range ``math.isfinite`` raised a bare OverflowError.
MAX_INT = 2**53
#: An integer field: an int within ``MAX_INT``, not a flag (``true``), a float or text.
_Int = Annotated[StrictInt, Field(ge=-MAX_INT, le=MAX_INT)]


def _not_a_flag(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not the flag {value!r}")
    return value


#: A float field: a float, an int (``low: 1``) or text a float reads (``1e-3``, which the
#: YAML reader keeps as text, as YAML 1.1 does), but not a flag (``true`` was 1.0).
_Float = Annotated[float, BeforeValidator(_not_a_flag)]


#: How far (in steps) a float may lie from its grid and still be on it: float rounding.
_GRID_TOLERANCE = 1e-8
#: How far (relative) a float may lie past a bound and still be that bound: a few ulps.
_BOUND_TOLERANCE = 1e-12
#: The most steps a stepped float's bounds may lie from zero. ``low + k * step`` is off by
#: about ``5e-16 * max(|low|, |high|) / step`` steps, past ``_GRID_TOLERANCE`` from about
#: 2e7 steps: there draws began to fail ``contains`` (Optuna's too, by the same tolerance),
#: at 1e8 one in fourteen. (Optuna's own check of the grid raised decimal's
#: DivisionImpossible past 1e28 steps, at every trial.)
MAX_GRID_INDEX = 10**7


def _in_range(value: object, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and low <= value <= high


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntParam(_Frozen):
    """An integer in ``[low, high]`` (``step`` apart, or log-uniform when ``log``)."""

    type: Literal["int"]
    low: _Int
    high: _Int
    log: bool = False
    step: _Int = 1
    safe: tuple[_Int, _Int] | None = None

    @field_validator("step")
    @classmethod
    def _grid(cls, step: int, info: ValidationInfo) -> int:
        bounds = _ordered_bounds(info)
        if bounds is None or step < 1 or info.data.get("log"):
            return step  # `_check` names the problem (or `log` takes no step)
        low, high = bounds
        span = int(high) - int(low)
        if step > span:
            raise ValueError(_too_coarse(span, step, low))
        if span % step:
            raise ValueError(_not_dividing(span, step, int(low) + span // step * step))
        return step

    @field_validator("safe")
    @classmethod
    def _safe_on_grid(
        cls, safe: tuple[int, int] | None, info: ValidationInfo
    ) -> tuple[int, int] | None:
        bounds, step = _ordered_bounds(info), info.data.get("step")
        if safe is None or bounds is None or not isinstance(step, int) or step < 1:
            return safe
        (low, high), (s_low, s_high) = bounds, safe
        first = low - (low - s_low) // step * step  # the first grid point >= s_low
        if low <= s_low <= s_high <= high and first > s_high:
            raise ValueError(_safe_off_grid(low, step, safe))
        return safe

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_numeric(self.low, self.high, self.log, self.safe)
        if self.step < 1:
            raise ValueError(f"`step` must be >= 1, got {self.step}")
        if self.log and self.step != 1:
            raise ValueError(f"`step` must be 1 when `log` is true, got {self.step}")
        return self

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def snap(self, value: object) -> int | None:
        """The grid value nearest ``value``, or ``None`` unless it is a number in range."""
        if not _in_range(value, self.low, self.high):
            return None
        assert isinstance(value, int | float)
        k = min(round((value - self.low) / self.step), (self.high - self.low) // self.step)
        return int(self.low + k * self.step)


class FloatParam(_Frozen):
    """A float in ``[low, high]`` (log-uniform when ``log``, on a grid when ``step``)."""

    type: Literal["float"]
    low: _Float
    high: _Float
    log: bool = False
    step: _Float | None = None
    safe: tuple[_Float, _Float] | None = None

    @field_validator("step")
    @classmethod
    def _grid(cls, step: float | None, info: ValidationInfo) -> float | None:
        """Refuse a grid Optuna would not draw as declared: one point, points float rounding
        moves off it, or a last point short of ``high`` (Optuna lowers ``high`` to it, with a
        warning every trial) — read, as Optuna reads them, as the decimals they print as."""
        bounds = _ordered_bounds(info)
        if bounds is None or step is None or not (math.isfinite(step) and step > 0):
            return step  # `_check` names the problem
        if info.data.get("log"):
            return step  # `_check` refuses it
        low, high = bounds
        with decimal.localcontext(decimal.Context()):  # Optuna's: the default context
            d_low, d_step = decimal.Decimal(str(low)), decimal.Decimal(str(step))
            span = decimal.Decimal(str(high)) - d_low
            if d_step > span:
                raise ValueError(_too_coarse(span, step, low))
            finest = max(abs(low), abs(high)) / MAX_GRID_INDEX
            if step < finest * (1 - 1e-9):  # leeway for rounding: 8e-07 on [0, 8] is the bound
                raise ValueError(
                    f"`step` must be at least max(|low|, |high|) / {MAX_GRID_INDEX} = "
                    f"{finest!r} (on a finer grid float rounding moves drawn values off "
                    f"it), got {step}"
                )
            if span % d_step:
                raise ValueError(_not_dividing(span, step, float(span // d_step * d_step + d_low)))
        return step

    @field_validator("safe")
    @classmethod
    def _safe_on_grid(
        cls, safe: tuple[float, float] | None, info: ValidationInfo
    ) -> tuple[float, float] | None:
        bounds, step = _ordered_bounds(info), info.data.get("step")
        if safe is None or bounds is None or not isinstance(step, float):
            return safe
        s_low, s_high = safe
        if bounds[0] <= s_low <= s_high <= bounds[1] and (
            grid_bounds(bounds[0], step, s_low, s_high) is None
        ):
            raise ValueError(_safe_off_grid(bounds[0], step, safe))
        return safe

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_numeric(self.low, self.high, self.log, self.safe)
        if self.step is not None and not math.isfinite(self.step):
            raise ValueError(f"`step` must be a finite number, got {self.step}")
        if self.step is not None and (self.log or not self.step > 0):
            raise ValueError(
                f"`step` must be > 0 and cannot be combined with `log`, got {self.step}"
            )
        return self

    def contains(self, value: object) -> bool:
        """A finite number in range, on the grid when there is a ``step`` (up to float
        rounding: ``0.1 * 3`` is on a grid of tenths, and on ``[0, 0.3]`` it is the top
        of the range)."""
        if not self._near_range(value):
            return False
        assert isinstance(value, int | float)
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) <= _GRID_TOLERANCE

    def snap(self, value: object) -> float | None:
        """The grid value nearest ``value`` (``value`` itself without a ``step``), within
        ``[low, high]`` and with the grid's decimals (``0.3``, not ``0.1 * 3``); ``None``
        unless it is a finite number in range (up to float rounding at the bounds)."""
        if not self._near_range(value):
            return None
        assert isinstance(value, int | float)
        snapped = float(value)
        if self.step is not None:
            last = math.floor((self.high - self.low) / self.step + _GRID_TOLERANCE)
            k = min(max(round((value - self.low) / self.step), 0), last)
            snapped = self.low + k * self.step
            places = _decimals(self.low, self.step)
            if places is not None:
                snapped = round(snapped, places)
        return min(max(snapped, self.low), self.high)

    def _near_range(self, value: object) -> bool:
        """A finite number in ``[low, high]``, or past a bound by float rounding only (a
        few ulps; on a grid, ``_GRID_TOLERANCE`` of a step)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        grid = _GRID_TOLERANCE * self.step if self.step is not None else 0.0
        below = max(grid, _BOUND_TOLERANCE * abs(self.low))
        above = max(grid, _BOUND_TOLERANCE * abs(self.high))
        return self.low - below <= value <= self.high + above


class CategoricalParam(_Frozen):
    """One of ``choices``; ``when`` maps a choice (or ``a|b``) to its conditional children."""

    type: Literal["categorical"]
    choices: tuple[Choice, ...]
    safe: tuple[Choice, ...] | None = None
    when: dict[str, dict[str, Param]] = Field(default_factory=dict)

    @field_validator("choices")
    @classmethod
    def _drawable(cls, choices: tuple[Choice, ...]) -> tuple[Choice, ...]:
        big = [c for c in choices if type(c) is int and abs(c) > MAX_INT]
        if big:
            raise ValueError(
                f"an integer choice must be in [-{MAX_INT}, {MAX_INT}], got {shown(big[0])}"
            )
        return choices

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("`choices` must not be empty")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"`choices` must be unique, got {list(self.choices)}")
        if self.safe is not None:
            unknown = [c for c in self.safe if c not in self.choices]
            if unknown:
                raise ValueError(f"`safe` lists {unknown}, which are not among `choices`")
        labels = {str(c) for c in self.choices}
        for key in self.when:
            bad = [part for part in key.split("|") if part not in labels]
            if bad:
                raise ValueError(
                    f"`when` key {key!r} names {bad}, which are not among the choices "
                    f"{sorted(labels)}"
                )
        return self

    def contains(self, value: object) -> bool:
        return any(type(value) is type(c) and value == c for c in self.choices)

    def children(self, value: Choice) -> dict[str, Param]:
        """The conditional parameters that exist when ``value`` is chosen."""
        label = str(value)
        out: dict[str, Param] = {}
        for key, block in self.when.items():
            if label in key.split("|"):
                out.update(block)
        return out


class _BoundedRepr(reprlib.Repr):
    """``repr`` to a bound: three levels of containers, eight items of each, 200 characters
    of a string (redacted first, by ``redact``) or of any other value. It visits only what
    it shows: YAML aliases make a few hundred bytes a list of 10**9 elements, which a whole
    ``repr`` (or a copy) expanded, taking time and memory exponential in their depth."""

    def __init__(self, redact: Callable[[str], str] | None) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxdict = 8
        self.maxset = self.maxfrozenset = self.maxdeque = 8
        self.maxstring = self.maxother = 200
        self.maxlong = 5000  # a long integer is shortened by `shown`, which names its length
        self._redact = redact

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, str):  # a subclass too: only a string is redacted
            return self.repr_str(x if self._redact is None else self._redact(x), level)
        return super().repr1(x, level)

    def repr_dict(self, x: Any, level: int) -> str:
        """In the mapping's order, as ``repr`` (``reprlib`` sorts the keys)."""
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        items = [
            f"{self.repr1(key, level - 1)}: {self.repr1(item, level - 1)}"
            for key, item in itertools.islice(x.items(), self.maxdict)
        ]
        return "{" + ", ".join(items + [self.fillvalue] * (len(x) > self.maxdict)) + "}"


#: The most characters :func:`shown` gives, past which it ends with ``…``.
MAX_SHOWN = 1000


def shown(value: object, *, redact: Callable[[str], str] | None = None) -> str:
    """``repr(value)`` fit for a message: bounded (:class:`_BoundedRepr`, each string
    passed through ``redact`` before it is cut; at most :data:`MAX_SHOWN` characters), and
    a run of more than 24 digits (a number past any bound) as its first and last digits and
    its length, ``1000000000…0000 (401 digits)``."""
    text = re.sub(
        r"\d{25,}",
        lambda m: f"{m[0][:10]}…{m[0][-4:]} ({len(m[0])} digits)",
        _BoundedRepr(redact).repr(value),
    )
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def grid_bounds(low: float, step: float, lo: float, hi: float) -> tuple[float, float] | None:
    """The first and last points of the grid ``low + k * step`` inside ``[lo, hi]`` (the
    same point when one is), with the grid's decimals, or ``None`` when none is: counted
    with ``_GRID_TOLERANCE`` of a step, since ``(0.7 - 0.1) / 0.1`` is 5.999… in binary
    floats and a box ending at 0.7 lost its top point."""
    first = math.ceil((lo - low) / step - _GRID_TOLERANCE)
    last = math.floor((hi - low) / step + _GRID_TOLERANCE)
    if first > last:
        return None
    return _grid_points(low, step, first, last)


def grid_box(
    low: float, high: float, step: float, lo: float, hi: float
) -> tuple[float, float] | None:
    """``[lo, hi]`` (within ``[low, high]``) rounded outwards to the grid ``low + k * step``
    of ``[low, high]``, with the grid's decimals, so that it keeps its width and holds at
    least two grid points (one holding a single point at an end of the grid gains its
    neighbour); ``None`` when the grid has fewer than two points (nothing to narrow)."""
    top = math.floor((high - low) / step + _GRID_TOLERANCE)
    if top < 1:
        return None
    first = max(math.floor((lo - low) / step + _GRID_TOLERANCE), 0)
    last = min(math.ceil((hi - low) / step - _GRID_TOLERANCE), top)
    if first == last:
        first, last = (first - 1, last) if last == top else (first, last + 1)
    return _grid_points(low, step, first, last)


def _grid_points(low: float, step: float, first: int, last: int) -> tuple[float, float]:
    """Grid points ``first`` and ``last`` of ``low + k * step``, with the grid's decimals."""
    places = _decimals(low, step)
    bounds = (low + first * step, low + last * step)
    if places is None:
        return bounds
    return round(bounds[0], places), round(bounds[1], places)


def _decimals(*numbers: float) -> int | None:
    """The most decimal places any of ``numbers`` shows when printed (``0.1`` has 1,
    ``1e-05`` has 5), or ``None`` past 15 (``1 / 3``): a grid's points are rounded to it."""
    places = 0
    for number in numbers:
        exponent = decimal.Decimal(repr(number)).as_tuple().exponent
        if not isinstance(exponent, int):
            return None
        places = max(places, -exponent)
    return places if places <= 15 else None


def _ordered_bounds(info: ValidationInfo) -> tuple[float, float] | None:
    """``low`` and ``high`` of the parameter being validated when both are valid, finite and
    in order: otherwise ``_check_numeric`` names the problem, and a grid is not checked."""
    low, high = info.data.get("low"), info.data.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return (low, high) if low < high else None


def _too_coarse(span: object, step: float, low: float) -> str:
    return (
        f"`step` must be at most `high` - `low` = {span} (a grid of two points or more), "
        f"got {step}, which leaves only {low}"
    )


def _not_dividing(span: object, step: float, high: float) -> str:
    return (
        f"`step` must divide `high` - `low` = {span}, got {step}; the sampler would lower "
        f"`high` to {high}"
    )


def _safe_off_grid(low: float, step: float, safe: tuple[float, float]) -> str:
    return (
        f"`safe` must hold a point of the grid from {low} in steps of {step}, got "
        f"[{safe[0]}, {safe[1]}], which nothing drawn can lie in"
    )


def _check_numeric(
    low: float, high: float, log: bool, safe: tuple[float, float] | tuple[int, int] | None
) -> None:
    # a sampler draws between the bounds: Optuna raises a bare OverflowError past them
    for name, bound in (("low", low), ("high", high)):
        if not math.isfinite(bound):
            raise ValueError(f"`{name}` must be a finite number, got {bound}")
    if not low < high:
        raise ValueError(f"`low` must be < `high`, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"`low` must be > 0 when `log` is true, got {low}")
    if safe is not None:
        s_low, s_high = safe
        if not low <= s_low <= s_high <= high:
            raise ValueError(
                f"`safe` must be a sub-range [a, b] of [{low}, {high}], got [{s_low}, {s_high}]"
            )


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
CategoricalParam.model_rebuild()
