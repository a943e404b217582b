"""CBPE under covariate shift.

Stream: ``x ~ N(mu_k, 1)`` with ``mu_k`` moving from -1.0 to 1.5 over 8 windows of
``WINDOW = 2000`` rows; ``P(y=1 | x) = sigmoid(2x - 0.5)`` never changes (the model stays
calibrated conditional on x after calibration); the model's score
``sigmoid(1.2x - 0.2)`` is miscalibrated but monotone. Calibration on a 10k-row
reference at ``mu = 0``. Tolerances: estimated accuracy within ``ACCURACY_TOL = 0.03``
of the realised accuracy in every window; F1 and ROC AUC within ``OTHER_TOL = 0.04``.
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


def _window(rng: np.random.Generator, mu: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(mu, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x - 0.5)))).astype(int)
    return 1 / (1 + np.exp(-(1.2 * x - 0.2))), y


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


def test_estimated_f1_and_roc_auc_track_realised_values(
    shifted: tuple[CBPE, CBPE, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    isotonic, _, windows = shifted
    f1, auc = make_objective("f_beta", beta=1.0), make_objective("roc_auc")
    for scores, labels in windows[::3]:
        est_f1 = isotonic.estimate(scores, metric="f1")
        est_auc = isotonic.estimate(scores, metric="roc_auc")
        assert abs(est_f1.value - f1.value(labels, scores)) <= OTHER_TOL
        assert abs(est_auc.value - auc.value(labels, scores)) <= OTHER_TOL
        assert est_auc.ci_lo < est_auc.value < est_auc.ci_hi


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
