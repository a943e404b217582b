"""Whether a model fails on more than an allowed share of its runs, decided sequentially.

The rollback watch looks at a new champion's failed runs (raised, stopped at the run
deadline, answered non-finite values) after every batch, for as long as the watch lasts:
a fixed-horizon test at each look would reject a model failing at the limit far more
often than ``alpha``. This is Wald's sequential probability ratio test of a failure rate
``ratio`` times the limit against the limit itself, stopped the first time its likelihood
ratio reaches ``1 / alpha``: by Ville's inequality a model failing at the limit is
rejected with probability at most ``alpha`` however often it is looked at, and one
failing less often with less (the ratio only shrinks). Each failure multiplies the ratio
by about ``ratio``, each answered run shrinks it a little: at a limit of 0.001 and alpha
0.05, two failures in the first ~180 runs reject, three in ~430, and a model failing on
every other run is rejected at its second failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shadow.stats._errors import StatsError


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


def failure_rate_look(
    failures: int, runs: int, *, limit: float, alpha: float, ratio: float = 10.0
) -> FailureRateLook:
    """Whether ``failures`` of ``runs`` are evidence (at level ``alpha``, valid at every
    look) that the failure rate is above ``limit``; the alternative is ``ratio`` times it
    (at most halfway from the limit to 1). A ``limit`` of 0 is exceeded by one failure."""
    if not (isinstance(runs, int) and isinstance(failures, int) and 0 <= failures <= runs):
        raise StatsError(f"`failures` must be in [0, runs={runs!r}], got {failures!r}")
    if not (0 <= limit < 1):
        raise StatsError(f"`limit` must be in [0, 1), got {limit!r}")
    if not (0 < alpha < 1):
        raise StatsError(f"`alpha` must be in (0, 1), got {alpha!r}")
    if not (math.isfinite(ratio) and ratio > 1):
        raise StatsError(f"`ratio` must be a finite number > 1, got {ratio!r}")
    threshold = math.log(1 / alpha)
    if limit == 0:
        llr = math.inf if failures else 0.0
    else:
        alternative = min(ratio * limit, (1 + limit) / 2)
        llr = failures * math.log(alternative / limit) + (runs - failures) * math.log(
            (1 - alternative) / (1 - limit)
        )
    return FailureRateLook(
        failures=failures,
        runs=runs,
        limit=limit,
        log_likelihood_ratio=llr,
        threshold=threshold,
        exceeded=llr >= threshold,
    )
