"""Performance decay: realised objective per window (matured labels only) and a
weighted linear trend that says how fast the model is getting worse.

:func:`realised_windows` turns a scoring log (predictions, request times, label arrival
times) into :class:`WindowValue` points, counting a request only when its label arrived
before the window's end plus ``maturity`` — so late-arriving labels of a recent window
do not bias it towards the requests that get labelled fast.

:class:`DecayEstimator` fits ``value = intercept + slope * days`` by weighted least
squares (weights = labelled requests per window), reports the slope per day with a 95 %
t-interval, when the trend crosses the objective's threshold in the bad direction, and a
recommended re-tuning interval: the time the trend takes to lose ``tolerance`` of the
objective, clipped to ``[min_interval_days, max_interval_days]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from numbers import Real
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from monitor._errors import EstimationError
from monitor.objectives import Objective, ObjectiveError

DecayStatus = Literal["insufficient_data", "decaying", "stable", "improving"]
_DAY_S = 86_400.0
# Residuals this small relative to the values' scale are float error: the points lie on
# a line and the fit says nothing about their noise.
_EXACT_FIT_RTOL = 1e-9


@dataclass(frozen=True, kw_only=True)
class WindowValue:
    """The realised objective over one window.

    ``window_end`` is a UTC ``datetime`` when the inputs were datetimes, else float
    seconds. ``n`` counts the requests with matured labels (``value`` is ``None`` when
    there are none), ``n_requests`` all requests in the window, ``label_coverage`` their
    ratio and ``median_label_delay_s`` the median label delay of the counted requests.
    ``n_left_out`` of the ``n`` have a label the objective cannot score (its
    :meth:`~monitor.objectives.Objective.valid_rows`: a label of 0 under MAPE, a class the
    model does not have) and are not in ``value`` (``None`` when all are)."""

    window_start: datetime | float
    window_end: datetime | float
    value: float | None
    n: int
    n_requests: int
    label_coverage: float
    median_label_delay_s: float | None
    n_left_out: int = 0

    @property
    def n_scored(self) -> int:
        """The requests behind ``value``."""
        return self.n - self.n_left_out


@dataclass(frozen=True, kw_only=True)
class DecayResult:
    """The fitted trend. ``slope_per_day`` is in objective units per day (negative means
    falling), ``slope_ci`` its 95 % interval; ``current_estimate`` is the trend at the
    last window and ``intercept`` at the first window. ``projected_crossing`` is when
    the trend reaches ``threshold`` in the bad direction (in the past if it already
    has; ``None`` when the trend is not heading there).
    ``recommended_retune_interval_days`` is ``None`` only when
    ``status == "insufficient_data"``, and then every fitted field is ``None``: too few
    windows, or windows lying exactly on a sloped line, whose noise (and so the slope's
    interval) the fit cannot estimate."""

    slope_per_day: float | None
    slope_ci: tuple[float, float] | None
    intercept: float | None
    current_estimate: float | None
    projected_crossing: datetime | None
    recommended_retune_interval_days: float | None
    n_windows: int
    status: DecayStatus


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT


def _is_number_or_missing(value: Any) -> bool:
    return _is_missing(value) or (
        isinstance(value, Real) and not isinstance(value, bool | np.bool_)
    )


def _seconds(values: Any) -> tuple[np.ndarray, bool]:
    """Float epoch seconds (NaN for missing) and whether the input was datetime-like."""
    arr = np.asarray(values)
    if arr.dtype == object and all(_is_number_or_missing(v) for v in arr.ravel()):
        # numbers with None for missing: epoch seconds, not pandas' nanoseconds
        arr = np.array(
            [np.nan if _is_missing(v) else float(v) for v in arr.ravel()],
            dtype=np.float64,
        ).reshape(arr.shape)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64), False
    stamps = pd.to_datetime(pd.Series(arr.ravel()), utc=True)
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[stamps.isna().to_numpy()] = np.nan
    return ns / 1e9, True


def _stamp(t: float, as_datetime: bool) -> datetime | float:
    return datetime.fromtimestamp(t, tz=UTC) if as_datetime else t


def _span_seconds(span: timedelta | float, name: str) -> float:
    seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
    if not seconds >= 0 or not np.isfinite(seconds):
        raise EstimationError(f"`{name}` must be a non-negative duration, got {span!r}")
    return seconds


def window_value(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    timestamps: np.ndarray,
    label_times: np.ndarray,
    *,
    objective: Objective,
    start: float,
    end: float,
    maturity: float,
) -> WindowValue:
    """The realised ``objective`` over one window ``[start, end)`` (epoch seconds) of the
    requests given, all of which the caller placed in it: those whose label (arrival time
    in ``label_times``, NaN for none) came at or before ``end + maturity`` count, as in
    :func:`realised_windows`, which computes each of its windows with this."""
    labelled = np.isfinite(label_times) & (label_times <= end + maturity)
    n, n_requests = int(labelled.sum()), int(timestamps.shape[0])
    value, left_out = None, 0
    if n:
        try:
            valid = np.asarray(objective.valid_rows(y_true[labelled], y_pred[labelled]), bool)
            left_out = int(n - valid.sum())
            scored = np.flatnonzero(labelled)[valid]
            if scored.size:
                value = float(objective.value(y_true[scored], y_pred[scored]))
        except ObjectiveError:  # undefined here (ROC AUC of a window with one class)
            value = None  # this window sits out the trend; the others still count
    delay = float(np.median(label_times[labelled] - timestamps[labelled])) if n else None
    return WindowValue(
        window_start=start,
        window_end=end,
        value=value,
        n=n,
        n_requests=n_requests,
        label_coverage=n / n_requests if n_requests else 0.0,
        median_label_delay_s=delay,
        n_left_out=left_out,
    )


#: The most windows :func:`realised_windows` cuts a span into.
MAX_WINDOWS = 100_000


def realised_windows(
    y_true: Any,
    y_pred: Any,
    timestamps: Any,
    label_times: Any,
    *,
    objective: Objective,
    window: timedelta | float,
    maturity: timedelta | float,
    start: datetime | float | None = None,
    as_of: datetime | float | None = None,
) -> list[WindowValue]:
    """Realised ``objective`` per window of ``window`` length (seconds or timedelta).

    ``timestamps`` are request times and ``label_times`` label arrival times (epoch
    seconds or datetime-likes; NaN/NaT/None for no label — ``y_true`` is ignored there).
    A request counts when its label arrived at or before ``window_end + maturity``; one
    the objective cannot score is left out of its window's value (and counted in
    ``n_left_out``): one label of 0 under MAPE, or of a class the model does not have,
    took the whole window out of the trend.
    Windows start at ``start`` (default: the first request). With ``as_of`` set,
    windows whose labels cannot have matured by then (``window_end + maturity > as_of``)
    are left out.
    """
    ts, as_datetime = _seconds(timestamps)
    lt, _ = _seconds(label_times)
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if not (ts.shape[0] == lt.shape[0] == truth.shape[0] == pred.shape[0]):
        raise EstimationError(
            f"inputs differ in length: {ts.shape[0]} timestamps, {lt.shape[0]} label "
            f"times, {truth.shape[0]} labels, {pred.shape[0]} predictions"
        )
    width = _span_seconds(window, "window")
    if width <= 0:
        raise EstimationError(f"`window` must be positive, got {window!r}")
    wait = _span_seconds(maturity, "maturity")
    if ts.size == 0 or not np.isfinite(ts).any():
        return []
    first = float(np.nanmin(ts)) if start is None else float(_seconds([start])[0][0])
    last = float(np.nanmax(ts))
    cutoff = None if as_of is None else float(_seconds([as_of])[0][0])
    out: list[WindowValue] = []
    n_windows = int(np.floor((last - first) / width)) + 1
    if n_windows > MAX_WINDOWS:  # each window, empty or not, is a value: 2e9 never returned
        raise EstimationError(
            f"`window` of {width:g} s cuts the {last - first:g} s from the first request "
            f"into {n_windows} windows, more than {MAX_WINDOWS}: widen it"
        )
    bins = np.floor((ts - first) / width)
    for k in range(max(n_windows, 0)):
        lo, hi = first + k * width, first + (k + 1) * width
        if cutoff is not None and hi + wait > cutoff:
            break
        mine = bins == k
        value = window_value(
            truth[mine],
            pred[mine],
            ts[mine],
            lt[mine],
            objective=objective,
            start=lo,
            end=hi,
            maturity=wait,
        )
        if as_datetime:
            value = replace(value, window_start=_stamp(lo, True), window_end=_stamp(hi, True))
        out.append(value)
    return out


class DecayEstimator:
    """Weighted linear trend of an objective over windows.

    ``threshold`` is the objective value the model must not cross (below it for
    greater-is-better objectives, above it otherwise). ``tolerance`` is how much of the
    objective (in its own units) may be lost between re-tunings: the recommended
    interval is ``tolerance / |slope|`` days while the trend heads the bad way, clipped
    to ``[min_interval_days, max_interval_days]`` (``max_interval_days`` when it does
    not). ``status`` is ``"decaying"``/``"improving"`` when the whole 95 % interval of the
    slope lies on that side of zero, else ``"stable"``; fewer than ``min_windows`` usable
    windows give ``"insufficient_data"``.

    Windows lying exactly on a line (every residual within ``1e-9 * max(1, max|value|)``,
    easy with a handful of labels: accuracy over one or two of them is 0, 0.5 or 1) leave
    no residual to estimate the noise from, so no interval: a sloped exact line gives
    ``"insufficient_data"`` with every fitted field ``None`` (as too few windows do), a
    flat one (the trend moving less than that tolerance over the windows' span)
    ``"stable"``.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        threshold: float,
        min_windows: int = 3,
        tolerance: float = 0.01,
        min_interval_days: float = 1.0,
        max_interval_days: float = 90.0,
        confidence: float = 0.95,
    ) -> None:
        if min_windows < 3:
            raise EstimationError(f"`min_windows` must be at least 3, got {min_windows}")
        if not tolerance > 0:
            raise EstimationError(f"`tolerance` must be positive, got {tolerance}")
        if not 0 < min_interval_days <= max_interval_days:
            raise EstimationError(
                "`min_interval_days` must be positive and at most `max_interval_days`, got "
                f"{min_interval_days} and {max_interval_days}"
            )
        if not 0 < confidence < 1:
            raise EstimationError(f"`confidence` must be in (0, 1), got {confidence}")
        self.objective = objective
        self.threshold = float(threshold)
        self.min_windows = min_windows
        self.tolerance = float(tolerance)
        self.min_interval_days = float(min_interval_days)
        self.max_interval_days = float(max_interval_days)
        self.confidence = confidence

    def fit_windows(self, windows: Sequence[WindowValue]) -> DecayResult:
        """Fit on :func:`realised_windows` output (windows without a value are skipped),
        each weighted by the requests its value was scored on."""
        return self.fit(
            [
                (w.window_end, w.value, w.n_scored)
                for w in windows
                if w.value is not None and w.n_scored > 0
            ]
        )

    def fit(self, points: Sequence[tuple[datetime | float, float, int]]) -> DecayResult:
        """Fit on ``(window_end, value, n)`` points; ``window_end`` is a datetime or epoch
        seconds, ``n`` the labelled requests behind ``value`` (the WLS weight).

        A point is left out (and not counted in ``n_windows`` or towards ``min_windows``)
        when its value is not finite, its ``n`` is not a positive finite number, or its
        ``window_end`` is missing (None, NaN, NaT) or infinite: one such point made the
        whole fit NaN, and the verdict "stable"."""
        weighted = [
            (t, float(v), float(n))
            for t, v, n in points
            if n > 0 and np.isfinite(float(n)) and np.isfinite(float(v))
        ]
        ends, _ = _seconds([t for t, _, _ in weighted])
        timed = np.isfinite(ends)
        usable = [point for point, known in zip(weighted, timed, strict=True) if known]
        if len(usable) < max(self.min_windows, 3):  # a t-interval needs a degree of freedom
            return _insufficient(len(usable))
        seconds = ends[timed]
        origin = float(seconds.min())
        x = (seconds - origin) / _DAY_S
        y = np.array([v for _, v, _ in usable])
        w = np.array([n for _, _, n in usable])
        if np.ptp(x) == 0:
            raise EstimationError("decay points must span more than one instant")
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        sxx = float(np.sum(w * (x - xm) ** 2))
        slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
        intercept_origin = float(ym - slope * xm)
        dof = len(usable) - 2
        resid = y - (intercept_origin + slope * x)
        tol = _EXACT_FIT_RTOL * max(1.0, float(np.max(np.abs(y))))
        exact_fit = bool(np.all(np.abs(resid) <= tol))
        if exact_fit and abs(slope) * float(np.ptp(x)) > tol:
            return _insufficient(len(usable))  # a sloped exact line: no noise, no interval
        # Weights are known only up to scale (value variance ~ sigma^2 / n): estimate sigma^2.
        sigma2 = float(np.sum(w * resid**2) / dof)
        half = float(stats.t.ppf(0.5 + self.confidence / 2, dof)) * np.sqrt(sigma2 / sxx)
        lo, hi = slope - half, slope + half
        bad_sign = -1.0 if self.objective.greater_is_better else 1.0
        x_last = float(x.max())
        current = intercept_origin + slope * x_last
        heading_bad = slope * bad_sign > 0
        crossing: datetime | None = None
        if heading_bad:
            x_cross = (self.threshold - intercept_origin) / slope
            try:
                crossing = datetime.fromtimestamp(origin + x_cross * _DAY_S, tz=UTC)
            except (OverflowError, OSError, ValueError):  # past any date: a rounding slope
                crossing = None
            interval = float(
                np.clip(self.tolerance / abs(slope), self.min_interval_days, self.max_interval_days)
            )
        else:
            interval = self.max_interval_days
        if exact_fit:  # a flat exact line: no slope, whatever the noise
            status: DecayStatus = "stable"
        elif lo * bad_sign > 0 and hi * bad_sign > 0:
            status = "decaying"
        elif lo * bad_sign < 0 and hi * bad_sign < 0:
            status = "improving"
        else:
            status = "stable"
        return DecayResult(
            slope_per_day=slope,
            slope_ci=(lo, hi),
            intercept=intercept_origin,
            current_estimate=current,
            projected_crossing=crossing,
            recommended_retune_interval_days=interval,
            n_windows=len(usable),
            status=status,
        )


def _insufficient(n_windows: int) -> DecayResult:
    return DecayResult(
        slope_per_day=None,
        slope_ci=None,
        intercept=None,
        current_estimate=None,
        projected_crossing=None,
        recommended_retune_interval_days=None,
        n_windows=n_windows,
        status="insufficient_data",
    )
