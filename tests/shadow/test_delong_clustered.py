"""Clustered (request-level) DeLong: rows of one batch request are not independent."""

from __future__ import annotations

import numpy as np

from shadow.stats import delong_arrays, delong_test


def _segmented(seed: int, requests: int, rows: int, lift: float = 0.0):
    """Exchangeable models (one scores x0, the other x1) on requests whose label leans
    on x0 or on x1 (a fair coin per request); ``lift`` makes the challenger better."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(requests, rows, 2))
    sign = rng.choice([-1.0, 1.0], size=(requests, 1))
    logit = (1.0 + 0.5 * sign) * x[..., 0] + (1.0 - 0.5 * sign) * x[..., 1]
    y = (rng.random((requests, rows)) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    challenger = x[..., 1] + lift * (2 * y - 1)
    clusters = np.repeat(np.arange(requests), rows)
    return y.ravel(), x[..., 0].ravel(), challenger.ravel(), clusters


def test_with_one_row_per_cluster_the_clustered_variance_is_delongs() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(float)
    a, b = rng.normal(size=(2, 7, 400)) + y
    _, _, row_level = delong_arrays(y, a, b)
    _, _, clustered = delong_arrays(y, a, b, clusters=rng.permutation(400) + 1000)
    np.testing.assert_allclose(clustered, row_level, rtol=1e-10)


def test_exchangeable_models_on_segmented_batch_requests_are_rarely_told_apart() -> None:
    """100 seeded streams of 200 fifty-row requests, one look at alpha 0.05: counted
    by rows the models were told apart in most streams, by requests in 8 (at most 10 asserted)."""
    by_rows = by_requests = 0
    for seed in range(100):
        y, a, b, clusters = _segmented(seed, requests=200, rows=50)
        by_rows += delong_test(y, a, b).p_value <= 0.05
        by_requests += delong_test(y, a, b, clusters=clusters).p_value <= 0.05
    assert by_rows >= 30
    assert by_requests <= 10  # 8 of these 100 seeds


def test_a_clearly_better_challenger_is_still_told_apart_by_requests() -> None:
    y, a, b, clusters = _segmented(5, requests=200, rows=50, lift=0.5)
    result = delong_test(y, a, b, clusters=clusters)
    assert result.difference > 0 and result.p_value < 1e-4
