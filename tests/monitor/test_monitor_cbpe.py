"""CBPE under covariate shift.

Stream: ``x ~ N(mu_k, 1)`` with ``mu_k`` moving from -1.0 to 1.5 over 8 windows of
``WINDOW = 2000`` rows; ``P(y=1 | x) = sigmoid(2x - 0.5)`` never changes (the model stays
calibrated conditional on x after calibration); the model's score
``sigmoid(1.2x - 0.2)`` is miscalibrated but monotone. Calibration on a 10k-row
reference at ``mu = 0``. Tolerances: estimated accuracy within ``ACCURACY_TOL = 0.03``
of the realised accuracy in every window; F1 and ROC AUC within ``OTHER_TOL = 0.04``.

Shifting the mean barely moves the ROC AUC (0.87, 0.86, 0.87 over the windows checked), so
a constant estimate would pass there. The ROC AUC is checked on a second stream whose
windows mix a growing share ``MIXED_SHARES`` of a less separable subpopulation into
``N(0, 1)``: ``x ~ N(0.25, 0.3)``, around where ``P(y=1 | x) = 0.5``; the realised AUC falls
from 0.85 to 0.67. A metric is checked only on windows over which it moves by more
than twice its tolerance, so no constant estimate is within it in every window.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor import CBPE, EstimationError
from monitor.objectives import make_objective

WINDOW = 2000
ACCURACY_TOL = 0.03
OTHER_TOL = 0.04
MEANS = np.linspace(-1.0, 1.5, 8)
MIXED_SHARES = (0.0, 0.3, 0.6, 0.9)


def _labelled(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(2 * x - 0.5)))).astype(int)
    return 1 / (1 + np.exp(-(1.2 * x - 0.2))), y


def _window(rng: np.random.Generator, mu: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _labelled(rng, rng.normal(mu, 1.0, n))


def _mixed_window(rng: np.random.Generator, share: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the rows from the hard subpopulation ``N(0.25, 0.3)``, the rest
    ``N(0, 1)``: covariate shift only, ``P(y | x)`` is unchanged."""
    hard = round(share * n)
    return _labelled(rng, np.r_[rng.normal(0.25, 0.3, hard), rng.normal(0.0, 1.0, n - hard)])


@pytest.fixture(scope="module")
def shifted() -> tuple[CBPE, CBPE, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    ref_scores, ref_labels = _window(rng, 0.0, 10_000)
    isotonic = CBPE(seed=1).fit(ref_scores, ref_labels)
    platt = CBPE(calibration="platt", seed=1).fit(ref_scores, ref_labels)
    return isotonic, platt, [_window(rng, mu, WINDOW) for mu in MEANS]


def test_estimated_accuracy_tracks_realised_accuracy(
    shifted: tuple[CBPE, CBPE, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    isotonic, platt, windows = shifted
    accuracy = make_objective("accuracy")
    realised = [accuracy.value(y, s) for s, y in windows]
    assert max(realised) - min(realised) > 0.05  # the shift really moves accuracy
    for estimator in (isotonic, platt):
        for (scores, _labels), actual in zip(windows, realised, strict=True):
            estimate = estimator.estimate(scores)
            assert estimate.n == WINDOW and estimate.ci_lo <= estimate.value <= estimate.ci_hi
            assert abs(estimate.value - actual) <= ACCURACY_TOL


def test_estimated_f1_tracks_realised_f1(
    shifted: tuple[CBPE, CBPE, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    isotonic, _, windows = shifted
    f1 = make_objective("f_beta", beta=1.0)
    checked = windows[::3]
    realised = [f1.value(labels, scores) for scores, labels in checked]
    assert max(realised) - min(realised) > 2 * OTHER_TOL  # no constant is within tolerance
    for (scores, _labels), actual in zip(checked, realised, strict=True):
        estimate = isotonic.estimate(scores, metric="f1")
        assert abs(estimate.value - actual) <= OTHER_TOL
        assert estimate.ci_lo <= estimate.value <= estimate.ci_hi


def test_estimated_roc_auc_tracks_realised_auc_as_a_hard_subpopulation_grows(
    shifted: tuple[CBPE, CBPE, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    isotonic, platt, _ = shifted
    auc = make_objective("roc_auc")
    rng = np.random.default_rng(5)
    windows = [_mixed_window(rng, share, WINDOW) for share in MIXED_SHARES]
    realised = [auc.value(labels, scores) for scores, labels in windows]
    assert max(realised) - min(realised) > 2 * OTHER_TOL  # no constant is within tolerance
    for estimator in (isotonic, platt):
        for (scores, _labels), actual in zip(windows, realised, strict=True):
            estimate = estimator.estimate(scores, metric="roc_auc")
            assert abs(estimate.value - actual) <= OTHER_TOL
            assert estimate.ci_lo < estimate.value < estimate.ci_hi


def test_unfitted_or_unusable_inputs_raise_estimation_error() -> None:
    with pytest.raises(EstimationError, match="not fitted"):
        CBPE().estimate(np.array([0.2, 0.8]))
    with pytest.raises(EstimationError, match="both classes"):
        CBPE().fit(np.array([0.2, 0.8]), np.array([1, 1]))
    with pytest.raises(EstimationError, match="`metric` must be one of"):
        CBPE().fit(np.array([0.2, 0.8]), np.array([0, 1])).estimate(
            np.array([0.5]),
            metric="mcc",  # type: ignore[arg-type]
        )


def test_accuracy_interval_half_width_is_the_poisson_binomial_normal_interval() -> None:
    """Reference scores 0.2, 0.4, 0.6, 0.8 (ten each) with 1, 3, 7, 9 positives: isotonic
    calibration returns exactly 0.1, 0.3, 0.7, 0.9. A window of 25 of each score has
    per-request chances of being right c = 0.9, 0.7, 0.7, 0.9 (threshold 0.5), so
    accuracy 0.8 and half-width z * sqrt(sum c (1 - c)) / n = 1.95996 * sqrt(15) / 100."""
    levels = np.array([0.2, 0.4, 0.6, 0.8])
    positives = [1, 3, 7, 9]
    ref_scores = np.repeat(levels, 10)
    ref_labels = np.concatenate([[1] * k + [0] * (10 - k) for k in positives])
    cbpe = CBPE().fit(ref_scores, ref_labels)
    np.testing.assert_allclose(cbpe.calibrated(levels), [0.1, 0.3, 0.7, 0.9], rtol=1e-12)

    estimate = cbpe.estimate(np.repeat(levels, 25))
    half = 1.959963984540054 * np.sqrt(25 * (0.09 + 0.21 + 0.21 + 0.09)) / 100
    assert half == pytest.approx(0.0759091, abs=1e-7)
    assert estimate.n == 100 and estimate.value == pytest.approx(0.8, rel=1e-12)
    assert (estimate.ci_lo, estimate.ci_hi) == pytest.approx((0.8 - half, 0.8 + half), rel=1e-12)


def test_accuracy_is_estimated_of_the_decisions_at_the_threshold() -> None:
    """The reference of the interval test, calibrated to 0.1, 0.3, 0.7, 0.9: at threshold
    0.3 the scores 0.4, 0.6 and 0.8 are decided positive, right with chances 0.3, 0.7
    and 0.9, and 0.2 negative, right with 0.9: accuracy 0.7 (0.8 at 0.5)."""
    levels = np.array([0.2, 0.4, 0.6, 0.8])
    ref_labels = np.concatenate([[1] * k + [0] * (10 - k) for k in (1, 3, 7, 9)])
    cbpe = CBPE(threshold=0.3).fit(np.repeat(levels, 10), ref_labels)
    estimate = cbpe.estimate(np.repeat(levels, 25))
    assert estimate.value == pytest.approx(0.7, rel=1e-12)
    half = 1.959963984540054 * np.sqrt(25 * (0.09 + 0.21 + 0.21 + 0.09)) / 100
    assert (estimate.ci_lo, estimate.ci_hi) == pytest.approx((0.7 - half, 0.7 + half), rel=1e-12)


def test_a_threshold_that_is_not_a_number_is_refused() -> None:
    """NaN decided every request negative, and the estimate was of no decision made."""
    with pytest.raises(EstimationError, match="`threshold` must be a number, got nan"):
        CBPE(threshold=float("nan"))


def _fitted() -> CBPE:
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    return CBPE().fit(scores, (rng.random(1000) < scores).astype(int))


@pytest.mark.parametrize(
    "shape",
    [pytest.param((200, 3), id="three_classes"), pytest.param((20, 2, 5), id="three_dims")],
)
def test_scores_of_a_shape_not_binary_are_refused(shape: tuple[int, ...]) -> None:
    """A multiclass model's ``[200, 3]`` probabilities were flattened to 600 scores and
    estimated as 600 binary requests (``n=600``)."""
    scores = np.full(shape, 0.5)
    with pytest.raises(EstimationError, match=r"`scores` must be of shape \[n\], \[n, 1\]"):
        _fitted().estimate(scores)
    with pytest.raises(EstimationError, match=rf"got shape \[{', '.join(map(str, shape))}\]"):
        _fitted().estimate(scores)


def test_reference_scores_of_a_shape_not_binary_are_refused() -> None:
    with pytest.raises(EstimationError, match=r"`ref_scores` must be of shape \[n\]"):
        CBPE().fit(np.full((4, 3), 0.5), np.array([0, 1, 0, 1]))


def test_one_or_two_column_scores_are_the_positive_class_s() -> None:
    cbpe = _fitted()
    p = np.random.default_rng(1).random(300)
    expected = cbpe.estimate(p)
    assert cbpe.estimate(p.reshape(-1, 1)) == expected
    assert cbpe.estimate(np.column_stack([1 - p, p])) == expected
    assert expected.n == 300
