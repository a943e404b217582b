"""Fixed-horizon tests reported beside the sequential ones (valid at one planned look only).

Vectorised over arrays of summary statistics so the A/A simulation can show what
peeking at them does.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from shadow.stats.always_valid._base import VARIANCE_FLOOR


def t_test(
    estimate: np.ndarray, estimate_variance: np.ndarray, df: np.ndarray, *, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided t-test of ``effect = 0``: ``(p_value, ci_low, ci_high)``.

    The paired t-test passes ``V = s^2/n`` and ``df = n - 1``; Welch's test passes
    ``V = s_a^2/n_a + s_b^2/n_b`` and the Welch–Satterthwaite ``df``.
    """
    theta = np.asarray(estimate, dtype=np.float64)
    se = np.sqrt(np.maximum(np.asarray(estimate_variance, dtype=np.float64), VARIANCE_FLOOR))
    dof = np.maximum(np.asarray(df, dtype=np.float64), 1.0)
    with np.errstate(over="ignore"):  # a nonzero estimate of zero variance: t is inf, p 0
        t = np.abs(theta) / se
    p = 2.0 * sps.t.sf(t, dof)
    q = sps.t.isf(alpha / 2.0, dof) * se
    return np.asarray(p), np.asarray(theta - q), np.asarray(theta + q)


def welch_df(var_a: np.ndarray, n_a: np.ndarray, var_b: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom (arms with one unit count as zero variance)."""
    na = np.maximum(np.asarray(n_a, dtype=np.float64), 2.0)
    nb = np.maximum(np.asarray(n_b, dtype=np.float64), 2.0)
    a = np.asarray(var_a, dtype=np.float64) / na
    b = np.asarray(var_b, dtype=np.float64) / nb
    num = (a + b) ** 2
    den = a**2 / (na - 1.0) + b**2 / (nb - 1.0)
    # both arms without spread (or too little to square): no evidence either way, df 1
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.asarray(np.clip(ratio, 1.0, na + nb - 2.0))
