"""How many of a heatmap column's windows chance lets drift a feature that did not change.

Each window's test flags a stationary feature with probability ``level`` (its false-positive
rate: a p-value test's threshold, a distance's noise-floor level), so over ``n``
independent windows the count of drifted ones is Binomial(``n``, ``level``): about 1 in
20 windows at 0.05, and some window of 22 drifts 68 % of the time. A column's count is
beyond chance when a one-sided binomial test rejects it at that same ``level``.
"""

from __future__ import annotations

import math
from functools import lru_cache

_SLACK = 1e-9  # relative: a single window's tail, 1 - (1 - level), is level up to rounding


def beyond_chance(drifted: int, tested: int, level: float) -> bool:
    """Whether ``drifted`` of ``tested`` windows is more than a feature that did not change
    gives at ``level``: P(Binomial(tested, level) >= drifted) <= level. One drifted window
    of one is (a column of one window is outlined when it drifted); under no drift a column
    of any width is, at most ``level`` of the time."""
    if drifted <= 0 or tested <= 0:
        return False
    return drifted >= least_beyond_chance(tested, round(level, 6))


@lru_cache(maxsize=1024)
def least_beyond_chance(n: int, level: float) -> int:
    """The fewest drifted windows of ``n`` whose upper tail under Binomial(``n``, ``level``)
    is at most ``level`` (``1 <= result <= n``; ``level`` is taken in [1e-6, 0.5]). Summed
    from the top in log space, so a column of 50,000 windows (100,000 through the API in
    2 columns) does not underflow."""
    level = min(max(level, 1e-6), 0.5)
    log_p, log_q = math.log(level), math.log1p(-level)
    log_n = math.lgamma(n + 1)
    tail = 0.0
    least = n + 1
    for k in range(n, 0, -1):
        tail += math.exp(
            log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        )
        if tail > level * (1 + _SLACK):
            break
        least = k
    return least
