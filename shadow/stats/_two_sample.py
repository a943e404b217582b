"""Unpaired live split (A/B): an always-valid test on the difference of two arms' means.

Units are assigned to champion or challenger (see :func:`assign`), so the arms are
independent, but one unit's outcomes are not: a user answers many requests. Each arm's
estimate is therefore the ratio ``sum of outcomes / number of outcomes`` over its units,
with the delta-method (cluster-robust) variance
``K/(K-1) * sum_u (s_u - R n_u)^2 / (sum_u n_u)^2`` over its ``K`` units (Deng et al.
2018, "Applying the delta method in metric analytics"). With one outcome per unit this is
the plain mean and ``s^2/n``. The same normal-mixture martingale as the paired test turns
the estimate into a confidence sequence and an always-valid p-value (Johari et al. 2017
use exactly this two-sample mSPRT). Welch's t-test on units is reported beside it.

A unit's totals grow look after look, so the test keeps per arm only sums over units
(``K``, ``sum n``, ``sum s``, ``sum n^2``, ``sum s^2``, ``sum n s``) and the caller, who
keeps each unit's totals, says what a unit had before the look (:class:`UnitUpdate`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from shadow.stats._errors import StatsError
from shadow.stats._fixed import welch_df
from shadow.stats._look import (
    Decision,
    LookArrays,
    RunningInference,
    TwoSampleLook,
    check_decision,
    decode_bound,
    encode_bound,
    evaluate_estimate,
)
from shadow.stats._state import FORMAT_VERSION, check_state
from shadow.stats._validation import check_positive_int, check_sample
from shadow.stats.always_valid import MethodName, make_method

logger = logging.getLogger(__name__)

_KIND = "two_sample_sequential_test"
# Per arm: units, outcomes, sum, sum of squared counts, sum of squared sums, sum of count * sum.
_COLUMNS = 6


@dataclass(frozen=True)
class UnitUpdate:
    """The units of one arm that gained outcomes at a look: each unit's outcome count and
    sum before the look (``0`` and ``0`` for a unit new to the test), and the count and sum
    of the outcomes it gained. Arrays of one length, one entry per unit."""

    count_before: np.ndarray
    total_before: np.ndarray
    count_added: np.ndarray
    total_added: np.ndarray

    def sums(self) -> np.ndarray:
        """What the look adds to the arm's six unit sums."""
        n0, s0, dn, ds = (
            check_sample(np.atleast_1d(np.asarray(v, dtype=np.float64)), field=f, allow_empty=True)
            for f, v in (
                ("count_before", self.count_before),
                ("total_before", self.total_before),
                ("count_added", self.count_added),
                ("total_added", self.total_added),
            )
        )
        if not n0.shape == s0.shape == dn.shape == ds.shape:
            raise StatsError("a UnitUpdate's four arrays must have one length")
        if (n0 < 0).any() or (dn < 0).any():
            raise StatsError("a UnitUpdate's counts must not be negative")
        n1, s1 = n0 + dn, s0 + ds
        return np.array(
            [
                np.count_nonzero((n0 == 0) & (n1 > 0)),
                dn.sum(),
                ds.sum(),
                (n1 * n1 - n0 * n0).sum(),
                (s1 * s1 - s0 * s0).sum(),
                (n1 * s1 - n0 * s0).sum(),
            ]
        )


def unit_sums(n: ArrayLike, total: ArrayLike, total_sq: ArrayLike) -> tuple[ArrayLike, ...]:
    """The six unit sums of ``n`` units with one outcome each, from the outcomes' count,
    sum and sum of squares (arrays of any shape)."""
    return (n, n, total, n, total_sq, total)


def ratio_variance(sums: tuple[ArrayLike, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An arm's ratio estimate and its delta-method variance (``inf`` with fewer than two
    units), vectorised over the six unit sums."""
    k, n, s, nn, ss, ns = (np.asarray(v, dtype=np.float64) for v in sums)
    safe_n = np.where(n > 0, n, 1.0)
    ratio = s / safe_n
    residual = np.maximum(ss - 2.0 * ratio * ns + ratio * ratio * nn, 0.0)
    var = k / np.maximum(k - 1.0, 1.0) * residual / safe_n**2
    return np.where(n > 0, ratio, 0.0), np.where(k >= 2, var, np.inf)


class TwoSampleSequentialTest:
    """Always-valid A/B test on the outcomes of units of two independent arms.

    :meth:`update` takes units with one outcome each; :meth:`update_units` units that
    answer many (a user's requests), whose totals grow from look to look. With
    ``greater_is_better=False`` (losses) a negative estimate favours the challenger; set it
    for business outcomes such as revenue per unit. ``planned_n`` and ``min_n`` count units
    per arm.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        method: MethodName = "confidence_sequence",
        planned_n: int = 1000,
        min_n: int = 30,
        mixing_sd: float | None = None,
        greater_is_better: bool = False,
    ) -> None:
        self._method = make_method(method, alpha=alpha, planned_n=planned_n, mixing_sd=mixing_sd)
        self.method: MethodName = method
        self.mixing_sd = mixing_sd
        self.min_n = check_positive_int(min_n, field="min_n", minimum=2)
        self.greater_is_better = bool(greater_is_better)
        # The six unit sums per arm (see ``_COLUMNS``): champion first.
        self._stats = np.zeros((2, _COLUMNS))
        self._running = RunningInference()
        self._history: list[TwoSampleLook] = []

    @property
    def alpha(self) -> float:
        return self._method.alpha

    @property
    def planned_n(self) -> int:
        return self._method.planned_n

    @property
    def decision(self) -> Decision:
        return self._running.decision

    @property
    def history(self) -> tuple[TwoSampleLook, ...]:
        return tuple(self._history)

    def evaluate(
        self, champion: tuple[ArrayLike, ...], challenger: tuple[ArrayLike, ...]
    ) -> LookArrays:
        """One look from each arm's six unit sums (see :func:`unit_sums`), for arrays of
        any shape."""
        k_a, k_b = (np.asarray(arm[0], dtype=np.float64) for arm in (champion, challenger))
        mean_a, var_a = ratio_variance(champion)
        mean_b, var_b = ratio_variance(challenger)
        active = (k_a >= self.min_n) & (k_b >= self.min_n)
        # Per-unit variances: the mixing scale and Welch's degrees of freedom.
        unit_a = np.where(np.isfinite(var_a), var_a, 0.0) * k_a
        unit_b = np.where(np.isfinite(var_b), var_b, 0.0) * k_b
        return evaluate_estimate(
            self._method,
            estimate=mean_b - mean_a,
            estimate_variance=var_a + var_b,
            unit_variance=unit_a + unit_b,
            df=welch_df(unit_a, k_a, unit_b, k_b),
            active=active,
            greater_is_better=self.greater_is_better,
        )

    def update(
        self, *, champion: np.ndarray | None = None, challenger: np.ndarray | None = None
    ) -> TwoSampleLook:
        """Add outcomes of newly measured units, one outcome per unit (either arm may be
        empty), and look."""
        arms = [
            check_sample([] if values is None else values, field=field, allow_empty=True)
            for field, values in (("champion", champion), ("challenger", challenger))
        ]
        if not any(arm.size for arm in arms):
            raise StatsError("`champion` and `challenger` must not both be empty")
        for row, values in enumerate(arms):
            self._stats[row] += unit_sums(values.size, values.sum(), np.dot(values, values))
        return self._look()

    def update_units(
        self, *, champion: UnitUpdate | None = None, challenger: UnitUpdate | None = None
    ) -> TwoSampleLook:
        """Add outcomes of units that may already have some (either arm may be absent),
        and look."""
        if champion is None and challenger is None:
            raise StatsError("`champion` and `challenger` must not both be absent")
        for row, update in enumerate((champion, challenger)):
            if update is not None:
                self._stats[row] += update.sums()
        return self._look()

    def _look(self) -> TwoSampleLook:
        a, b = self._stats
        arrays = self.evaluate(tuple(a), tuple(b))
        before = self._running.decision
        self._running = self._running.advance(arrays)
        look = TwoSampleLook(
            n_champion=int(a[0]),
            n_challenger=int(b[0]),
            estimate=float(arrays.estimate),
            ci_low=self._running.ci_low,
            ci_high=self._running.ci_high,
            p_value=self._running.p_value,
            decision=self._running.decision,
            fixed_t_p=float(arrays.fixed_t_p),
            fixed_ci=(float(arrays.fixed_low), float(arrays.fixed_high)),
        )
        self._history.append(look)
        if before == "continue" and look.decision != "continue":
            logger.info(
                "A/B %s test decided %s at n=%d/%d units (estimate=%.6g, p=%.3g)",
                self.method,
                look.decision,
                look.n_champion,
                look.n_challenger,
                look.estimate,
                look.p_value,
            )
        return look

    def to_dict(self) -> dict[str, Any]:
        history = []
        for look in self._history:
            item = asdict(look)
            item["ci_low"] = encode_bound(look.ci_low)
            item["ci_high"] = encode_bound(look.ci_high)
            item["fixed_ci"] = [encode_bound(v) for v in look.fixed_ci]
            history.append(item)
        return {
            "format_version": FORMAT_VERSION,
            "kind": _KIND,
            "config": {
                "alpha": self.alpha,
                "method": self.method,
                "planned_n": self.planned_n,
                "min_n": self.min_n,
                "mixing_sd": self.mixing_sd,
                "greater_is_better": self.greater_is_better,
            },
            "stats": self._stats.tolist(),
            "p_value": self._running.p_value,
            "ci_low": encode_bound(self._running.ci_low),
            "ci_high": encode_bound(self._running.ci_high),
            "decision": self._running.decision,
            "history": history,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TwoSampleSequentialTest:
        check_state(data, kind=_KIND)
        try:
            test = cls(**data["config"])
            stats = np.asarray(data["stats"], dtype=np.float64)
            if stats.shape == (2, 3):  # states written before units: one outcome per unit
                stats = np.stack(unit_sums(*stats.T), axis=1)
            test._stats = stats.reshape(2, _COLUMNS)
            test._running = RunningInference(
                p_value=float(data["p_value"]),
                ci_low=decode_bound(data["ci_low"], unbounded=-np.inf),
                ci_high=decode_bound(data["ci_high"], unbounded=np.inf),
                decision=check_decision(data["decision"]),
            )
            test._history = [
                TwoSampleLook(
                    n_champion=int(item["n_champion"]),
                    n_challenger=int(item["n_challenger"]),
                    estimate=float(item["estimate"]),
                    ci_low=decode_bound(item["ci_low"], unbounded=-np.inf),
                    ci_high=decode_bound(item["ci_high"], unbounded=np.inf),
                    p_value=float(item["p_value"]),
                    decision=check_decision(item["decision"]),
                    fixed_t_p=float(item["fixed_t_p"]),
                    fixed_ci=(
                        decode_bound(item["fixed_ci"][0], unbounded=-np.inf),
                        decode_bound(item["fixed_ci"][1], unbounded=np.inf),
                    ),
                )
                for item in data["history"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise StatsError(f"{_KIND} state is incomplete or malformed: {exc!r}") from exc
        return test
