"""The failure-rate test the rollback watch runs on a new champion: golden looks, an A/A
simulation at the limit looked at after every batch, and power against a model failing
on 2% of its runs."""

from __future__ import annotations

import numpy as np
import pytest

from shadow.stats import StatsError, failure_rate_look
from shadow.stats._failure_rate import MULTIPLES

LIMIT, ALPHA = 1e-3, 0.05
BATCH, LOOKS = 100, 50  # a look per 100 runs, up to the watch's 5,000 requests


def _first_rejection(failed: np.ndarray, batch: int = BATCH) -> int | None:
    """The runs at the first look that rejects, looking after every ``batch`` runs."""
    counts = np.cumsum(failed)
    for runs in range(batch, failed.size + 1, batch):
        if failure_rate_look(int(counts[runs - 1]), runs, limit=LIMIT, alpha=ALPHA).exceeded:
            return runs
    return None


def test_golden_looks() -> None:
    assert not failure_rate_look(2, 100, limit=LIMIT, alpha=ALPHA).exceeded
    three = failure_rate_look(3, 100, limit=LIMIT, alpha=ALPHA)
    assert three.exceeded and three.rate == 0.03
    # the mean of the likelihood ratios of 3 failures in 100 runs at each multiple
    mixed = np.mean([m**3 * ((1 - m * LIMIT) / (1 - LIMIT)) ** 97 for m in MULTIPLES])
    assert three.log_likelihood_ratio == pytest.approx(np.log(mixed))
    assert not failure_rate_look(3, 400, limit=LIMIT, alpha=ALPHA).exceeded
    assert failure_rate_look(4, 400, limit=LIMIT, alpha=ALPHA).exceeded
    assert not failure_rate_look(0, 10**6, limit=LIMIT, alpha=ALPHA).exceeded
    assert failure_rate_look(1, 1, limit=0.0, alpha=ALPHA).exceeded
    assert not failure_rate_look(0, 50, limit=0.0, alpha=ALPHA).exceeded
    # a limit near 1: the alternatives are at most halfway to 1, not past it
    assert failure_rate_look(10, 10, limit=0.5, alpha=ALPHA).exceeded


@pytest.mark.parametrize(
    ("runs", "batch", "seed"), [(5_000, 100, 11), (50_000, 1_000, 14)], ids=["5k", "50k"]
)
def test_a_model_failing_at_the_limit_is_rejected_at_most_alpha_of_the_time(
    runs: int, batch: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rejected = sum(
        _first_rejection(rng.random(runs) < LIMIT, batch) is not None for _ in range(1000)
    )
    assert rejected / 1000 <= ALPHA  # measured 0.015 (5k), 0.011 (50k)


def test_a_model_failing_on_two_percent_of_its_runs_is_rejected_within_1000_runs() -> None:
    rng = np.random.default_rng(12)
    at = [_first_rejection(rng.random(BATCH * LOOKS) < 0.02) for _ in range(500)]
    assert all(a is not None and a <= 1000 for a in at)  # measured: median 200, max 600


def test_a_model_failing_at_twice_the_limit_is_rejected_within_50k_runs() -> None:
    """One alternative (10x the limit) rejected it 10% of the time, however long the
    watch: its ratio drifted down below ~4x the limit."""
    rng = np.random.default_rng(13)
    at = [_first_rejection(rng.random(50_000) < 2 * LIMIT, 1_000) for _ in range(200)]
    assert sum(a is not None for a in at) / 200 >= 0.9  # measured 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 3, "runs": 2}, r"`failures` must be in \[0, runs=2\], got 3"),
        ({"limit": 1.0}, r"`limit` must be in \[0, 1\), got 1.0"),
        ({"alpha": 0.0}, r"`alpha` must be in \(0, 1\), got 0.0"),
    ],
    ids=["failures_past_runs", "limit_one", "alpha_zero"],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], message: str) -> None:
    args = {"failures": 0, "runs": 1, "limit": LIMIT, "alpha": ALPHA, **kwargs}
    with pytest.raises(StatsError, match=message):
        failure_rate_look(
            int(args.pop("failures")),
            int(args.pop("runs")),
            **args,  # type: ignore[arg-type]
        )
