"""Alpha spending for group-sequential looks (Lan & DeMets 1983).

The O'Brien–Fleming-type spending function ``alpha_1(t) = 2 - 2 Phi(z_{alpha/4} / sqrt(t))``
per side (two-sided total ``2 alpha_1(t)``, the convention of gsDesign, rpact and
ldbounds) spends almost nothing early and the full ``alpha`` at the planned end. Critical
values are exact for the canonical joint distribution of the look statistics (independent
Brownian increments in information time), found by the recursive numerical integration of
Armitage, McPherson & Rowe (1969) as laid out in Jennison & Turnbull (2000), ch. 19.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as sps

from shadow.stats._errors import StatsError
from shadow.stats._validation import check_alpha

_GRID = 801  # odd, for Simpson's rule
_SPAN = 9.0  # continuation densities are cut at +-9 sd (mass beyond is < 1e-18)


def obrien_fleming_spending(fraction: float | np.ndarray, *, alpha: float) -> np.ndarray:
    """Cumulative two-sided alpha spent by information fraction ``t`` in ``(0, 1]``; a
    fraction outside it (past the last look, spending more than ``alpha``) or an ``alpha``
    outside ``(0, 1)`` raises :class:`StatsError`."""
    alpha = check_alpha(alpha)
    t = np.asarray(fraction, dtype=np.float64)
    if not np.all((t > 0) & (t <= 1)):  # NaN too
        raise StatsError(f"`fraction` must be in (0, 1], got {fraction!r}")
    z = sps.norm.isf(alpha / 4.0)
    return np.asarray(4.0 * sps.norm.sf(z / np.sqrt(t)))


def _simpson(n: int, width: float) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w * width / (3.0 * (n - 1))


def _excess(b: float, mass: np.ndarray, grid: np.ndarray, sd: float, target: float) -> float:
    """Probability of first crossing ``|B| >= b`` at the next look, minus ``target``."""
    crossing = sps.norm.cdf((-b - grid) / sd) + sps.norm.cdf((grid - b) / sd)
    return float(mass @ crossing) - target


def group_sequential_bounds(fractions: Sequence[float], *, alpha: float) -> tuple[float, ...]:
    """Two-sided critical |z| per look so that the chance of crossing by look ``k`` under the
    null is ``alpha(t_k)`` (O'Brien–Fleming-type spending)."""
    alpha = check_alpha(alpha)
    t = np.asarray(fractions, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or np.any(t <= 0) or np.any(t > 1) or np.any(np.diff(t) <= 0):
        raise StatsError(
            f"information fractions must increase strictly within (0, 1], got {list(t)}"
        )
    spent = obrien_fleming_spending(t, alpha=alpha)
    increments = np.diff(np.r_[0.0, spent])
    # Look 1 on the Brownian scale B(t) = Z sqrt(t).
    bounds = [float(sps.norm.isf(increments[0] / 2.0))]
    reach = min(bounds[0], _SPAN) * np.sqrt(t[0])
    grid = np.linspace(-reach, reach, _GRID)
    density = sps.norm.pdf(grid, scale=np.sqrt(t[0]))
    weights = _simpson(_GRID, 2.0 * reach)
    for k in range(1, t.size):
        sd = float(np.sqrt(t[k] - t[k - 1]))
        mass = density * weights
        target = float(increments[k])
        upper = 40.0 * np.sqrt(t[k])
        if target <= _excess(upper, mass, grid, sd, 0.0):
            b = upper
        else:
            b = optimize.brentq(_excess, 0.0, upper, args=(mass, grid, sd, target), xtol=1e-10)
        bounds.append(float(b / np.sqrt(t[k])))
        reach = min(b, _SPAN * np.sqrt(t[k]))
        new_grid = np.linspace(-reach, reach, _GRID)
        kernel = sps.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd
        density, grid = kernel @ mass, new_grid
        weights = _simpson(_GRID, 2.0 * reach)
    return tuple(bounds)
