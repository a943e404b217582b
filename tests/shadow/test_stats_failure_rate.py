"""The failure-rate test the rollback watch runs on a new champion: golden looks, an A/A
simulation at the limit looked at after every batch, and power against a model failing
on 2% of its runs."""

from __future__ import annotations

import numpy as np
import pytest

from shadow.stats import StatsError, failure_rate_look

LIMIT, ALPHA = 1e-3, 0.05
BATCH, LOOKS = 100, 50  # a look per 100 runs, up to the watch's 5,000 requests


def _first_rejection(failed: np.ndarray) -> int | None:
    """The runs at the first look that rejects, looking after every ``BATCH`` runs."""
    counts = np.cumsum(failed)
    for look in range(1, LOOKS + 1):
        runs = look * BATCH
        if failure_rate_look(int(counts[runs - 1]), runs, limit=LIMIT, alpha=ALPHA).exceeded:
            return runs
    return None


def test_golden_looks() -> None:
    assert not failure_rate_look(1, 100, limit=LIMIT, alpha=ALPHA).exceeded  # one failure
    two = failure_rate_look(2, 100, limit=LIMIT, alpha=ALPHA)
    assert two.exceeded and two.rate == 0.02
    assert two.log_likelihood_ratio == pytest.approx(2 * np.log(10) + 98 * np.log(0.99 / 0.999))
    assert not failure_rate_look(2, 400, limit=LIMIT, alpha=ALPHA).exceeded
    assert failure_rate_look(3, 400, limit=LIMIT, alpha=ALPHA).exceeded
    assert not failure_rate_look(0, 10**6, limit=LIMIT, alpha=ALPHA).exceeded
    assert failure_rate_look(1, 1, limit=0.0, alpha=ALPHA).exceeded
    assert not failure_rate_look(0, 50, limit=0.0, alpha=ALPHA).exceeded
    # a limit near 1: the alternative is halfway to 1, not past it
    assert failure_rate_look(10, 10, limit=0.5, alpha=ALPHA).exceeded


def test_a_model_failing_at_the_limit_is_rejected_at_most_alpha_of_the_time() -> None:
    rng = np.random.default_rng(11)
    rejected = sum(
        _first_rejection(rng.random(BATCH * LOOKS) < LIMIT) is not None for _ in range(2000)
    )
    assert rejected / 2000 <= ALPHA  # measured 0.0145


def test_a_model_failing_on_two_percent_of_its_runs_is_rejected_within_1000_runs() -> None:
    rng = np.random.default_rng(12)
    at = [_first_rejection(rng.random(BATCH * LOOKS) < 0.02) for _ in range(500)]
    assert all(a is not None and a <= 1000 for a in at)  # measured: median 100, max 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 3, "runs": 2}, r"`failures` must be in \[0, runs=2\], got 3"),
        ({"limit": 1.0}, r"`limit` must be in \[0, 1\), got 1.0"),
        ({"alpha": 0.0}, r"`alpha` must be in \(0, 1\), got 0.0"),
        ({"ratio": 1.0}, r"`ratio` must be a finite number > 1, got 1.0"),
    ],
    ids=["failures_past_runs", "limit_one", "alpha_zero", "ratio_one"],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], message: str) -> None:
    args = {"failures": 0, "runs": 1, "limit": LIMIT, "alpha": ALPHA, **kwargs}
    with pytest.raises(StatsError, match=message):
        failure_rate_look(
            int(args.pop("failures")),
            int(args.pop("runs")),
            **args,  # type: ignore[arg-type]
        )
