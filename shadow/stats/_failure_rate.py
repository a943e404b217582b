"""Whether a model fails on more than an allowed share of its runs, decided sequentially.

The rollback watch looks at a new champion's failed runs (raised, stopped at the run
deadline, answered non-finite values) after every batch, for as long as the watch lasts:
a fixed-horizon test at each look would reject a model failing at the limit far more
often than ``alpha``. This is a sequential probability ratio test of the limit against a
mixture of failure rates above it (1.25, 1.5, 2, 3, 5 and 10 times the limit, equally
weighted, each at most halfway from the limit to 1), stopped the first time the mixed
likelihood ratio reaches ``1 / alpha``: a mixture of likelihood ratios is a martingale
under the limit, so by Ville's inequality a model failing at the limit is rejected with
probability at most ``alpha`` however often it is looked at, and one failing less often
with less. One alternative alone (10 times the limit) almost never rejected a model
failing at 1.5 to 4 times it, however long it was watched: its ratio drifts down there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shadow.stats._errors import StatsError

#: The failure rates the test weighs against the limit, as multiples of it.
MULTIPLES = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class FailureRateLook:
    """One look: the counts, the log likelihood ratio against its threshold
    (``log(1 / alpha)``), and whether the limit is exceeded."""

    failures: int
    runs: int
    limit: float
    log_likelihood_ratio: float
    threshold: float
    exceeded: bool

    @property
    def rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


def failure_rate_look(failures: int, runs: int, *, limit: float, alpha: float) -> FailureRateLook:
    """Whether ``failures`` of ``runs`` are evidence (at level ``alpha``, valid at every
    look) that the failure rate is above ``limit`` (against the mixture of
    :data:`MULTIPLES` of it). A ``limit`` of 0 is exceeded by one failure."""
    if not (isinstance(runs, int) and isinstance(failures, int) and 0 <= failures <= runs):
        raise StatsError(f"`failures` must be in [0, runs={runs!r}], got {failures!r}")
    if not (0 <= limit < 1):
        raise StatsError(f"`limit` must be in [0, 1), got {limit!r}")
    if not (0 < alpha < 1):
        raise StatsError(f"`alpha` must be in (0, 1), got {alpha!r}")
    threshold = math.log(1 / alpha)
    if limit == 0:
        llr = math.inf if failures else 0.0
    else:
        logs = [
            failures * math.log(p / limit) + (runs - failures) * math.log((1 - p) / (1 - limit))
            for p in (min(m * limit, (1 + limit) / 2) for m in MULTIPLES)
        ]
        top = max(logs)  # the log of the mean ratio, without overflow
        llr = top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))
    return FailureRateLook(
        failures=failures,
        runs=runs,
        limit=limit,
        log_likelihood_ratio=llr,
        threshold=threshold,
        exceeded=llr >= threshold,
    )
