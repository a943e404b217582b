"""The inference latency histogram's buckets cover the runs the daemon lets finish."""

from __future__ import annotations

from monitor import LATENCY_BUCKETS
from tunewatch._config import ScoringConfig


def test_latency_buckets_reach_the_run_deadline() -> None:
    """They ended at 1 s while a run may take up to `scoring.run_timeout_s` (5 s by
    default): every slower run fell in +Inf, and histogram_quantile read 1 s for them."""
    deadline = ScoringConfig().run_timeout_s
    assert deadline is not None
    assert LATENCY_BUCKETS[-1] >= deadline
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
