"""What every sequential test reports at a look, and the vectorised form it is computed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from shadow.stats.always_valid import AlwaysValidMethod

Decision = Literal["continue", "challenger_better", "challenger_worse"]

# Decision codes of the vectorised evaluation: 0 continue, +1 better, -1 worse.
DECISIONS: dict[int, Decision] = {
    0: "continue",
    1: "challenger_better",
    -1: "challenger_worse",
}


@dataclass(frozen=True)
class Look:
    """One look of a paired comparison; ``estimate`` is the mean of
    ``loss_challenger - loss_champion`` (negative = challenger better).

    ``p_value`` is always valid (non-increasing over looks) and ``(ci_low, ci_high)`` is
    the running intersection of the confidence sequence, so acting on either at any look
    keeps the error rate at ``alpha``. ``fixed_t_p`` / ``fixed_ci`` (paired t-test) and
    ``bootstrap_ci`` (percentile) are valid only at one planned horizon.
    """

    n: int
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    decision: Decision
    fixed_t_p: float
    fixed_ci: tuple[float, float]
    bootstrap_ci: tuple[float, float] | None


@dataclass(frozen=True)
class TwoSampleLook:
    """One look of an unpaired (A/B) comparison; ``estimate`` is
    ``mean(challenger) - mean(champion)``. Fixed-horizon columns come from Welch's test."""

    n_champion: int
    n_challenger: int
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    decision: Decision
    fixed_t_p: float
    fixed_ci: tuple[float, float]


@dataclass(frozen=True)
class LookArrays:
    """A look evaluated for many experiments or looks at once (arrays of one shape).

    ``p_value`` and the interval are those of this look alone; a running test takes the
    running minimum / intersection. ``decision`` holds codes (see :data:`DECISIONS`).
    """

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    decision: np.ndarray
    fixed_t_p: np.ndarray
    fixed_low: np.ndarray
    fixed_high: np.ndarray


def evaluate_estimate(
    method: AlwaysValidMethod,
    *,
    estimate: np.ndarray,
    estimate_variance: np.ndarray,
    unit_variance: np.ndarray,
    df: np.ndarray,
    active: np.ndarray,
    greater_is_better: bool,
    allowance: np.ndarray | float = 0.0,
) -> LookArrays:
    """The always-valid and fixed-horizon inference at one look (vectorised).

    ``active`` marks looks with enough data to decide (``n >= min_n``); other looks report
    an unbounded interval, ``p = 1`` and "continue". ``allowance`` widens the always-valid
    interval on both sides and moves the tested estimate that much towards 0 (what losses
    not seen yet could add); the fixed-horizon columns use the estimate as it is.
    """
    from shadow.stats._fixed import t_test

    theta = np.asarray(estimate, dtype=np.float64)
    tested = np.sign(theta) * np.maximum(np.abs(theta) - allowance, 0.0)
    on = np.asarray(active, dtype=bool)
    # Inactive looks may carry an infinite variance (n < 2); keep the math finite there.
    v = np.where(on, estimate_variance, 1.0)
    unit = np.where(on, unit_variance, 1.0)
    half = method.half_width(v, unit) + allowance
    p = method.p_value(tested, v, unit)
    p = np.where(on, p, 1.0)
    low = np.where(on, theta - half, -np.inf)
    high = np.where(on, theta + half, np.inf)
    sign = np.sign(theta) if greater_is_better else -np.sign(theta)
    decision = np.where(p <= method.alpha, sign, 0).astype(np.int8)
    fixed_p, fixed_low, fixed_high = t_test(theta, estimate_variance, df, alpha=method.alpha)
    return LookArrays(
        estimate=theta,
        ci_low=np.asarray(low),
        ci_high=np.asarray(high),
        p_value=np.asarray(p),
        decision=decision,
        fixed_t_p=fixed_p,
        fixed_low=fixed_low,
        fixed_high=fixed_high,
    )


def sample_variance(n: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> np.ndarray:
    """Unbiased variance from sufficient statistics (``inf`` where ``n < 2``)."""
    count = np.asarray(n, dtype=np.float64)
    s = np.asarray(total, dtype=np.float64)
    ss = np.asarray(total_sq, dtype=np.float64)
    safe = np.maximum(count, 2.0)
    var = np.maximum(ss - s**2 / np.maximum(count, 1.0), 0.0) / (safe - 1.0)
    return np.asarray(np.where(count >= 2, var, np.inf))


def skewness(
    n: np.ndarray, total: np.ndarray, total_sq: np.ndarray, total_cube: np.ndarray
) -> np.ndarray:
    """Sample skewness ``m3 / m2**1.5`` from power sums (0 where the values are all equal)."""
    count = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    mean = np.asarray(total, dtype=np.float64) / count
    m2 = np.maximum(np.asarray(total_sq, dtype=np.float64) / count - mean**2, 0.0)
    m3 = np.asarray(total_cube, dtype=np.float64) / count - 3.0 * mean * total_sq / count
    m3 = m3 + 2.0 * mean**3
    spread = m2 > 1e-12 * np.maximum(mean**2, 1e-300)
    return np.asarray(np.where(spread, m3 / np.where(spread, m2, 1.0) ** 1.5, 0.0))


@dataclass(frozen=True)
class RunningInference:
    """What a sequential test carries from look to look: the running minimum of the
    always-valid p-value, the running intersection of the confidence sequence, the first
    decision (decisions are final) and ``evidence``, the sign of the estimate at the look
    that set the running p-value (``None`` for a state stored before it was kept).

    A family-wise correction may act on the running p-value looks after it was set (Holm's
    step-down releases it when another test decides); the direction is then the one that
    evidence had, not the current estimate's, which may have crossed zero since."""

    p_value: float = 1.0
    ci_low: float = -np.inf
    ci_high: float = np.inf
    decision: Decision = "continue"
    evidence: int | None = 0

    def advance(self, arrays: LookArrays) -> RunningInference:
        """Fold in one look (``arrays`` holding 0-d arrays)."""
        low = max(self.ci_low, float(arrays.ci_low))
        high = min(self.ci_high, float(arrays.ci_high))
        if low > high:
            # The plug-in variance moved enough to empty the intersection; fall back to
            # this look's interval rather than report an empty one.
            low, high = float(arrays.ci_low), float(arrays.ci_high)
        decision = self.decision
        if decision == "continue":
            decision = DECISIONS[int(arrays.decision)]
        p_value, evidence = self.p_value, self.evidence
        if float(arrays.p_value) < p_value:
            p_value, evidence = float(arrays.p_value), int(np.sign(arrays.estimate))
        return RunningInference(
            p_value=p_value,
            ci_low=low,
            ci_high=high,
            decision=decision,
            evidence=evidence,
        )


def family_decision(
    adjusted_p_value: float, *, alpha: float, evidence: int | None, estimate: float
) -> Decision:
    """A loss comparison's decision under a family-wise correction: decided when the
    adjusted p-value is at most ``alpha``, in the direction of the ``evidence`` that set
    the test's running p-value (the current ``estimate``'s for a state stored before
    evidence was kept). Negative is better: the challenger's loss minus the champion's."""
    if adjusted_p_value > alpha:
        return "continue"
    sign = evidence if evidence is not None else int(np.sign(estimate))
    if sign == 0:  # no look moved the p-value off 1: nothing to decide on
        return "continue"
    return "challenger_better" if sign < 0 else "challenger_worse"


def check_decision(value: object) -> Decision:
    """A persisted decision, refused unless it is one of the vocabulary."""
    for decision in DECISIONS.values():
        if value == decision:
            return decision
    raise ValueError(f"`decision` must be one of {', '.join(DECISIONS.values())}, got {value!r}")


def encode_bound(value: float) -> float | None:
    """JSON-safe bound: an unbounded side is stored as ``None``."""
    return float(value) if np.isfinite(value) else None


def decode_bound(value: float | None, *, unbounded: float) -> float:
    return unbounded if value is None else float(value)
