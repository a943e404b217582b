"""Unpaired live split (A/B): an always-valid test on the difference of two stream means.

Units are assigned to champion or challenger (see :func:`assign`), so the arms are
independent. The estimate ``mean(challenger) - mean(champion)`` has plug-in variance
``s_a^2/n_a + s_b^2/n_b``; the same normal-mixture martingale as the paired test turns it
into a confidence sequence and an always-valid p-value (Johari et al. 2017 use exactly
this two-sample mSPRT). Welch's t-test is reported beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

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
    sample_variance,
)
from shadow.stats._state import FORMAT_VERSION, check_state
from shadow.stats._validation import check_positive_int, check_sample
from shadow.stats.always_valid import MethodName, make_method

logger = logging.getLogger(__name__)

_KIND = "two_sample_sequential_test"


class TwoSampleSequentialTest:
    """Always-valid A/B test on per-unit outcomes of two independent arms.

    With ``greater_is_better=False`` (losses) a negative estimate favours the challenger;
    set it for business outcomes such as revenue per unit. ``planned_n`` and ``min_n``
    count units per arm.
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
        # [n, sum, sum of squares] per arm: champion first.
        self._stats = np.zeros((2, 3))
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
        self,
        champion: tuple[np.ndarray, np.ndarray, np.ndarray],
        challenger: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> LookArrays:
        """One look from each arm's ``(n, sum, sum of squares)``, for arrays of any shape."""
        n_a, n_b = (np.asarray(arm[0], dtype=np.float64) for arm in (champion, challenger))
        mean_a = np.asarray(champion[1]) / np.maximum(n_a, 1.0)
        mean_b = np.asarray(challenger[1]) / np.maximum(n_b, 1.0)
        active = (n_a >= self.min_n) & (n_b >= self.min_n)
        # Infinite where an arm has fewer than two units (the fixed test then says p = 1).
        var_a = sample_variance(*champion)
        var_b = sample_variance(*challenger)
        finite_a = np.where(np.isfinite(var_a), var_a, 0.0)
        finite_b = np.where(np.isfinite(var_b), var_b, 0.0)
        return evaluate_estimate(
            self._method,
            estimate=mean_b - mean_a,
            estimate_variance=var_a / np.maximum(n_a, 1.0) + var_b / np.maximum(n_b, 1.0),
            unit_variance=var_a + var_b,
            df=welch_df(finite_a, n_a, finite_b, n_b),
            active=active,
            greater_is_better=self.greater_is_better,
        )

    def update(
        self, *, champion: np.ndarray | None = None, challenger: np.ndarray | None = None
    ) -> TwoSampleLook:
        """Add outcomes of newly measured units (either arm may be empty) and look."""
        arms = [
            check_sample([] if values is None else values, field=field, allow_empty=True)
            for field, values in (("champion", champion), ("challenger", challenger))
        ]
        if not any(arm.size for arm in arms):
            raise StatsError("`champion` and `challenger` must not both be empty")
        for row, values in enumerate(arms):
            self._stats[row] += (values.size, values.sum(), np.dot(values, values))
        a, b = self._stats
        arrays = self.evaluate((a[0], a[1], a[2]), (b[0], b[1], b[2]))
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
                "A/B %s test decided %s at n=%d/%d (estimate=%.6g, p=%.3g)",
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
            test._stats = np.asarray(data["stats"], dtype=np.float64).reshape(2, 3)
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
