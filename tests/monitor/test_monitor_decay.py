"""Decay: realised windows with label maturity, and the weighted linear trend.

Golden stream: 30 daily windows of 2000 requests; the probability that the model is
right falls linearly from 0.92 by ``SLOPE`` per day; labels arrive after an exponential
delay (mean 12 h) and count after a maturity of 2 days. The fitted slope must lie in its
95 % interval for every seed in ``SEEDS``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor import DecayEstimator, EstimationError, WindowValue, realised_windows
from monitor.objectives import make_objective

SLOPE = -0.003
DAYS = 30
PER_DAY = 2000
SEEDS = (0, 1, 2, 3, 4)
START = datetime(2025, 1, 1, tzinfo=UTC)


def _decaying_log(seed: int, slope: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = DAYS * PER_DAY
    t = np.sort(rng.uniform(0, DAYS * 86_400.0, n)) + START.timestamp()
    p_correct = 0.92 + slope * (t - START.timestamp()) / 86_400.0
    y = rng.integers(0, 2, n)
    correct = rng.random(n) < p_correct
    pred = np.where(correct, y, 1 - y).astype(float)
    proba = np.column_stack([1 - pred, pred])
    labels_at = t + rng.exponential(12 * 3600.0, n)
    labels_at[rng.random(n) < 0.05] = np.nan  # never labelled
    return y, proba, t.astype("datetime64[s]"), labels_at.astype("datetime64[s]")


def _fit(
    seed: int, slope: float, *, max_interval_days: float = 90.0
) -> tuple[DecayEstimator, list[WindowValue]]:
    y, proba, t, lt = _decaying_log(seed, slope)
    accuracy = make_objective("accuracy")
    windows = realised_windows(
        y, proba, t, lt, objective=accuracy, window=timedelta(days=1), maturity=timedelta(days=2)
    )
    return DecayEstimator(accuracy, threshold=0.85, max_interval_days=max_interval_days), windows


@pytest.mark.parametrize("seed", SEEDS)
def test_known_linear_decay_is_inside_the_reported_interval(seed: int) -> None:
    estimator, windows = _fit(seed, SLOPE)
    assert len(windows) == DAYS
    result = estimator.fit_windows(windows)
    assert result.status == "decaying" and result.slope_ci is not None
    lo, hi = result.slope_ci
    assert lo <= SLOPE <= hi
    assert result.projected_crossing is not None
    expected_crossing = START + timedelta(days=(0.92 - 0.85) / -SLOPE)
    assert abs(result.projected_crossing - expected_crossing) < timedelta(days=3)


def test_recommended_interval_shrinks_when_the_decay_doubles() -> None:
    slow = _fit(0, SLOPE)
    fast = _fit(0, 2 * SLOPE)
    slow_days = slow[0].fit_windows(slow[1]).recommended_retune_interval_days
    fast_days = fast[0].fit_windows(fast[1]).recommended_retune_interval_days
    assert slow_days is not None and fast_days is not None
    assert fast_days < 0.7 * slow_days
    assert slow_days == pytest.approx(0.01 / -SLOPE, rel=0.25)  # tolerance 0.01 / slope


def test_stable_model_gets_the_longest_interval() -> None:
    estimator, windows = _fit(1, 0.0, max_interval_days=60.0)
    result = estimator.fit_windows(windows)
    assert result.status == "stable"
    assert result.recommended_retune_interval_days in (60.0, pytest.approx(60.0))


def test_lower_is_better_objectives_decay_upwards() -> None:
    """The values scatter about ``0.30 + 0.01 * day`` by a residual orthogonal to the
    line (it sums to zero and to zero times the day), so the fit is exactly that line
    with a noise it can estimate: points exactly on a line give no interval at all."""
    log_loss = make_objective("log_loss")
    scatter = 0.002 * np.array([1, -1, -1, 1, 1, -1, -1, 1, 0, 0])
    points = [(float(d * 86_400), 0.30 + 0.01 * d + scatter[d], 1000) for d in range(10)]
    result = DecayEstimator(log_loss, threshold=0.5).fit(points)
    assert result.status == "decaying" and result.slope_per_day == pytest.approx(0.01)
    assert result.projected_crossing is not None
    assert result.projected_crossing.timestamp() == pytest.approx(20 * 86_400)
    assert result.current_estimate == pytest.approx(0.39)


def test_too_few_windows_is_insufficient() -> None:
    result = DecayEstimator(make_objective("accuracy"), threshold=0.8).fit(
        [(0.0, 0.9, 100), (86_400.0, 0.89, 100)]
    )
    assert result.status == "insufficient_data"
    assert result.slope_per_day is None and result.recommended_retune_interval_days is None


def _hourly(values: list[float], counts: list[int]) -> list[tuple[float, float, int]]:
    return [(3600.0 * (i + 1), v, n) for i, (v, n) in enumerate(zip(values, counts, strict=True))]


@pytest.mark.parametrize(
    "middle", [pytest.param(0.5, id="exact"), pytest.param(0.5 + 1e-15, id="float_noise")]
)
def test_windows_exactly_on_a_falling_line_are_no_evidence_of_decay(middle: float) -> None:
    """Accuracy over one or two labels is 0, 0.5 or 1, so three windows reading 1, 0.5
    and 0 lie exactly on a line: the residuals (and the noise estimated from them) were
    zero, the interval collapsed to the slope, and four labelled requests raised a
    decay alarm with ``slope_ci == (-12, -12)``. No interval can be formed from such a
    fit, so there is no verdict either way."""
    result = DecayEstimator(make_objective("accuracy"), threshold=0.5).fit(
        _hourly([1.0, middle, 0.0], [1, 2, 1])
    )
    assert result.status == "insufficient_data" and result.n_windows == 3
    assert result.slope_ci is None and result.slope_per_day is None
    assert result.projected_crossing is None
    assert result.recommended_retune_interval_days is None


def test_windows_exactly_on_a_rising_line_are_no_evidence_of_improvement() -> None:
    result = DecayEstimator(make_objective("accuracy"), threshold=0.5).fit(
        _hourly([0.0, 0.5, 1.0], [1, 2, 1])
    )
    assert result.status == "insufficient_data" and result.slope_ci is None


@pytest.mark.parametrize("value", [1.0, 0.1 + 0.2])
def test_windows_on_an_exactly_flat_line_are_stable(value: float) -> None:
    """A flat exact line (accuracy 1.0 in every window) is a slope of zero whatever the
    noise: stable, with the longest interval and no crossing."""
    result = DecayEstimator(make_objective("accuracy"), threshold=0.5).fit(
        _hourly([value] * 3, [1, 2, 1])
    )
    assert result.status == "stable" and result.slope_per_day == pytest.approx(0.0)
    assert result.projected_crossing is None or result.projected_crossing.year < 9999
    assert result.recommended_retune_interval_days == 90.0


def test_two_windows_leave_no_degree_of_freedom_and_give_insufficient_data() -> None:
    """``min_windows`` below 3 is refused when the estimator is built; set afterwards on
    the public attribute, two windows left the t-quantile at 0 degrees of freedom NaN,
    and the verdict was "stable" with a NaN interval and a one-day re-tuning interval,
    decided by NaN comparisons."""
    estimator = DecayEstimator(make_objective("accuracy"), threshold=0.5)
    estimator.min_windows = 2
    result = estimator.fit(_hourly([1.0, 0.5], [1, 2]))
    assert result.status == "insufficient_data" and result.n_windows == 2
    assert result.slope_ci is None and result.recommended_retune_interval_days is None


def test_realised_windows_count_only_matured_labels() -> None:
    accuracy = make_objective("accuracy")
    t = np.array([0.0, 10.0, 20.0, 30.0, 110.0])
    labels = np.array([5.0, 50.0, 200.0, np.nan, 120.0])  # 200 arrives after 100 + 60
    y = np.array([1, 0, 1, 1, 1])
    pred = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    windows = realised_windows(y, pred, t, labels, objective=accuracy, window=100.0, maturity=60.0)
    first = windows[0]
    assert (first.window_start, first.window_end) == (0.0, 100.0)
    assert (first.n, first.n_requests) == (2, 4)
    assert first.label_coverage == 0.5
    assert first.value == 0.5  # request 0 right, request 1 wrong
    assert first.median_label_delay_s == pytest.approx(22.5)
    assert windows[1].n == 1 and windows[1].value == 1.0
    not_yet = realised_windows(
        y, pred, t, labels, objective=accuracy, window=100.0, maturity=60.0, as_of=200.0
    )
    assert len(not_yet) == 1  # the second window matures only at 260


def test_a_window_with_one_class_sits_out_and_the_others_still_count() -> None:
    """ROC AUC is undefined on a window whose labels are all one class (a fraud model's
    quiet day): that window has no value, and the trend is fitted on the rest."""
    auc = make_objective("roc_auc")
    rng = np.random.default_rng(3)
    t = np.arange(400, dtype=float)  # four windows of 100 requests
    y = (rng.random(400) < 0.3).astype(float)
    y[100:200] = 0.0  # no positives in the second window
    pred = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    windows = realised_windows(y, pred, t, t + 1.0, objective=auc, window=100.0, maturity=5.0)
    assert [w.value is None for w in windows] == [False, True, False, False]
    assert windows[1].n == 100  # labelled, just not scoreable
    result = DecayEstimator(auc, threshold=0.5).fit_windows(windows)
    assert result.status != "insufficient_data"


def test_an_f1_window_without_positive_labels_or_predictions_sits_out() -> None:
    """F1 scored a window with no positive label and no positive prediction 0.0 (the
    model made no mistake there): a quiet day of a rare-positive model read as a collapse.
    It has no value, as PR AUC's does, and the trend is fitted on the rest."""
    f1 = make_objective("f_beta")
    rng = np.random.default_rng(4)
    t = np.arange(400, dtype=float)  # four windows of 100 requests
    y = (rng.random(400) < 0.3).astype(float)
    y[100:200] = 0.0
    pred = np.where(y == 1, 0.9, 0.1)
    windows = realised_windows(y, pred, t, t + 1.0, objective=f1, window=100.0, maturity=5.0)
    assert [w.value for w in windows] == [1.0, None, 1.0, 1.0]
    assert DecayEstimator(f1, threshold=0.5).fit_windows(windows).status != "decaying"


def test_a_label_the_objective_cannot_score_leaves_its_row_out_not_its_window() -> None:
    """MAPE raised on a single label of 0, so the whole window had no value: one genuine
    zero outcome per 250 requests took 4 of 10 windows out of the trend. The row is left
    out (a label of 1e-160, whose loss is too large to score, too) and the window says
    how many were; the trend is weighted by the rows that were scored."""
    mape = make_objective("mape")
    rng = np.random.default_rng(0)
    y = rng.normal(5.0, 1.0, 1000)
    y[::250] = 0.0  # windows 0, 2, 5 and 7
    y[950] = 1e-160
    pred = y + rng.normal(0.0, 0.2, 1000)
    t = np.arange(1000, dtype=float)
    windows = realised_windows(y, pred, t, t + 1.0, objective=mape, window=100.0, maturity=10.0)
    assert [w.n_left_out for w in windows] == [1, 0, 1, 0, 0, 1, 0, 1, 0, 1]
    assert all(w.n == 100 and w.label_coverage == 1.0 for w in windows)
    assert windows[0].value == pytest.approx(mape.value(y[1:100], pred[1:100]))
    assert windows[1].value == pytest.approx(mape.value(y[100:200], pred[100:200]))
    result = DecayEstimator(mape, threshold=1.0).fit_windows(windows)
    assert result.n_windows == 10
    only = realised_windows(
        np.zeros(3), np.ones(3), t[:3], t[:3], objective=mape, window=100.0, maturity=0.0
    )
    assert [(w.n, w.n_left_out, w.value) for w in only] == [(3, 3, None)]


def test_a_label_of_a_class_the_model_lacks_leaves_its_row_out_not_its_window() -> None:
    """One label naming a class a three-class model does not have made accuracy raise
    for the whole window, whose value was then None with no row left out."""
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 3 * 86_400, 300))  # three days of requests
    y = rng.integers(0, 3, 300).astype(float)
    pred = np.eye(3)[y.astype(int)] * 0.8 + 0.2 / 3  # right every time
    y[5] = 7.0
    accuracy = make_objective("accuracy", task="multiclass")
    windows = realised_windows(
        y, pred, t, t + 60.0, objective=accuracy, window=86_400, maturity=3600, as_of=4 * 86_400
    )
    assert [(w.value, w.n_left_out) for w in windows] == [(1.0, 1), (1.0, 0), (1.0, 0)]
    assert windows[0].n_scored == windows[0].n - 1


def test_invalid_arguments_name_the_field() -> None:
    with pytest.raises(EstimationError, match="`min_windows`"):
        DecayEstimator(make_objective("accuracy"), threshold=0.8, min_windows=2)
    with pytest.raises(EstimationError, match="differ in length"):
        realised_windows(
            [1],
            [1.0, 0.0],
            [0.0],
            [0.0],
            objective=make_objective("accuracy"),
            window=1.0,
            maturity=0.0,
        )


@pytest.mark.parametrize("value", [0.1 + 0.2, 0.9])
def test_a_flat_trend_with_a_rounding_slope_projects_no_crossing(value: float) -> None:
    """Equal window values fit a slope of ~1e-17 a day; a crossing that far away is past
    the last date a datetime can hold, and the evaluation run crashed on it."""
    counts = [5, 9, 2, 7, 3, 8]
    points = [(86_400.0 * (i + 1), value, n) for i, n in enumerate(counts)]
    result = DecayEstimator(make_objective("accuracy"), threshold=value - 0.05).fit(points)
    assert result.projected_crossing is None or result.projected_crossing.year < 9999
    assert result.status == "stable"


def test_golden_weighted_trend_with_unequal_weights() -> None:
    """Six daily windows with unequal request counts. Weighted least squares
    (``(X'WX)^-1 X'Wy``, sigma^2 = sum(w r^2) / (n - 2), t(0.975, 4) = 2.7764) gives slope
    -0.0194720 per day with 95 % interval (-0.0268821, -0.0120618): wholly below zero,
    so decaying. Unweighted, the slope would be -0.0188571; a 4x wider interval would
    straddle zero."""
    days = np.array([0.0, 1, 2, 3, 4, 5])
    values = np.array([0.90, 0.88, 0.87, 0.83, 0.84, 0.80])
    weights = np.array([100, 50, 80, 120, 60, 90])
    accuracy = make_objective("accuracy")
    result = DecayEstimator(accuracy, threshold=0.7, tolerance=0.05).fit(
        [(d * 86_400.0, v, int(n)) for d, v, n in zip(days, values, weights, strict=True)]
    )
    # the same fit by the normal equations
    x = np.column_stack([np.ones_like(days), days])
    xtwx = x.T @ (weights[:, None] * x)
    beta = np.linalg.solve(xtwx, x.T @ (weights * values))
    sigma2 = np.sum(weights * (values - x @ beta) ** 2) / (days.size - 2)
    half = 2.7764451051977934 * np.sqrt(sigma2 * np.linalg.inv(xtwx)[1, 1])
    assert beta[1] == pytest.approx(-0.019471982758620693, rel=1e-9)
    assert (beta[1] - half, beta[1] + half) == pytest.approx(
        (-0.02688212041109586, -0.012061845106145523), rel=1e-9
    )
    assert np.polyfit(days, values, 1)[0] == pytest.approx(-0.018857142857142857)

    assert result.status == "decaying" and result.n_windows == 6
    assert result.slope_per_day == pytest.approx(-0.019471982758620693, rel=1e-9)
    assert result.slope_ci == pytest.approx((-0.02688212041109586, -0.012061845106145523), rel=1e-9)
    assert result.intercept == pytest.approx(0.9002693965517241, rel=1e-9)
    assert result.current_estimate == pytest.approx(0.8029094827586206, rel=1e-9)
    crossing_day = (0.7 - 0.9002693965517241) / -0.019471982758620693
    assert result.projected_crossing is not None
    assert result.projected_crossing.timestamp() / 86_400.0 == pytest.approx(crossing_day)
    assert result.recommended_retune_interval_days == pytest.approx(0.05 / 0.019471982758620693)


def test_label_times_as_a_list_of_floats_with_none_read_as_epoch_seconds() -> None:
    """A list of floats with None for "no label" became an object array that pandas read
    as nanoseconds since 1970: every label "arrived" at 1.7 s, so late labels counted as
    matured (n = 5 instead of 0) with a label delay of -1.7e9 s."""
    accuracy = make_objective("accuracy")
    t = 1.7e9 + np.arange(20.0)
    y, pred = np.ones(20), np.full(20, 0.9)
    for lag, expected_n, expected_delay in [(50.0, [0, 0], None), (2.0, [5, 5], 2.0)]:
        label_times = [float(s + lag) if i % 2 == 0 else None for i, s in enumerate(t)]
        windows = realised_windows(
            y, pred, t, label_times, objective=accuracy, window=10.0, maturity=5.0
        )
        as_nan = realised_windows(
            y,
            pred,
            t,
            np.array([np.nan if v is None else v for v in label_times]),
            objective=accuracy,
            window=10.0,
            maturity=5.0,
        )
        assert windows == as_nan
        assert [w.n for w in windows] == expected_n
        assert windows[0].median_label_delay_s == expected_delay
        assert windows[0].window_start == 1.7e9  # seconds, not a datetime


def test_datetime_label_times_with_none_still_read_as_datetimes() -> None:
    accuracy = make_objective("accuracy")
    t = [START + timedelta(seconds=s) for s in range(4)]
    labels = [START + timedelta(seconds=s + 2) if s % 2 == 0 else None for s in range(4)]
    windows = realised_windows(
        np.ones(4), np.full(4, 0.9), t, labels, objective=accuracy, window=10.0, maturity=0.0
    )
    assert [(w.window_start, w.n, w.median_label_delay_s) for w in windows] == [(START, 2, 2.0)]


def _falling_a_point_a_day() -> list[tuple[Any, float, float]]:
    """Accuracy falling 0.01 a day over ten daily windows of 100 labelled requests, about
    the line by a small residual (a fit with noise to estimate, so an interval)."""
    scatter = 0.002 * np.array([1, -1, -1, 1, 1, -1, -1, 1, 0, 0])
    return [(1.7e9 + d * 86_400.0, 0.9 - 0.01 * d + scatter[d], 100.0) for d in range(10)]


def _as_datetimes(points: list[tuple[Any, float, float]]) -> list[tuple[Any, float, float]]:
    return [(datetime.fromtimestamp(t, tz=UTC), v, n) for t, v, n in points]


@pytest.mark.parametrize(
    ("as_datetimes", "missing"),
    [
        pytest.param(False, float("nan"), id="nan_among_seconds"),
        pytest.param(False, pd.NaT, id="nat_among_seconds"),
        pytest.param(False, None, id="none_among_seconds"),
        pytest.param(True, pd.NaT, id="nat_among_datetimes"),
        pytest.param(True, float("nan"), id="nan_among_datetimes"),
    ],
)
def test_decay_fit_skips_nan_window_end(as_datetimes: bool, missing: Any) -> None:
    """A window whose end time is unknown is left out, as a NaN value is. It was kept:
    its NaN day made the slope, its interval and every verdict NaN, so a model losing a
    point of accuracy a day was reported "stable" with the longest re-tuning interval."""
    points = _falling_a_point_a_day()
    if as_datetimes:
        points = _as_datetimes(points)
    estimator = DecayEstimator(make_objective("accuracy"), threshold=0.8)
    expected = estimator.fit(points[:3] + points[4:])
    points[3] = (missing, points[3][1], points[3][2])
    result = estimator.fit(points)
    assert result.status == "decaying" and result.n_windows == 9
    assert result == expected
    assert result.slope_per_day == pytest.approx(-0.01, abs=0.001)


@pytest.mark.parametrize("weight", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_decay_fit_skips_a_window_of_no_finite_weight(weight: float) -> None:
    """An infinite ``n`` weighed the fit by inf / inf: NaN everywhere, and "stable"."""
    points = _falling_a_point_a_day()
    estimator = DecayEstimator(make_objective("accuracy"), threshold=0.8)
    expected = estimator.fit(points[1:])
    points[0] = (points[0][0], points[0][1], weight)
    result = estimator.fit(points)
    assert result.status == "decaying" and result.n_windows == 9
    assert result == expected


def test_windows_without_a_time_count_against_min_windows() -> None:
    points = _falling_a_point_a_day()[:3]
    points[1] = (float("nan"), points[1][1], points[1][2])
    result = DecayEstimator(make_objective("accuracy"), threshold=0.8).fit(points)
    assert result.status == "insufficient_data" and result.n_windows == 2
    assert result.slope_per_day is None and result.slope_ci is None


def test_realised_windows_refuse_a_window_that_cuts_the_span_into_too_many() -> None:
    """A 1 s window over 2e9 s of requests walked every empty window and never returned."""
    ts = np.array([0.0, 2e9])
    with pytest.raises(EstimationError, match=r"`window` of 1 s .* more than 100000: widen it"):
        realised_windows(
            np.array([1, 0]),
            np.array([0.9, 0.1]),
            ts,
            ts,
            objective=make_objective("accuracy"),
            window=1.0,
            maturity=0.0,
        )
