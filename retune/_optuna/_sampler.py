"""The plan-aware sampler: TPE drawing inside a warm-start plan's box, honouring its
frozen parameters and letting a share of trials explore the full space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from retune.space._params import grid_bounds
from retune.warmstart._base import WarmStartPlan

_CATEGORICAL_TRIES = 8


class PlanSampler(BaseSampler):
    """Samples independently with ``base`` inside the plan's box, honours frozen
    parameters, and lets every ``explore_every``-th trial sample the full space.

    Distributions stay the full-space ones in every trial (Optuna forbids changing
    categorical choices within a study); only the draw is narrowed: numeric parameters
    by handing the base sampler the boxed distribution, categorical ones by rejection.
    """

    def __init__(self, base: BaseSampler, plan: WarmStartPlan, *, seed: int) -> None:
        self._base = base
        self._plan = plan
        self._rng = np.random.default_rng(seed)

    def _explores(self, trial: FrozenTrial) -> bool:
        every = self._plan.explore_every
        return every is not None and trial.number % every == every - 1

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self._explores(trial):
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        frozen = self._plan.frozen
        if param_name in frozen:
            internal = _internal_or_none(param_distribution, frozen[param_name])
            if internal is not None:
                return frozen[param_name]
        bound = self._plan.box_for(param_name)
        if bound is not None and isinstance(
            param_distribution, (FloatDistribution, IntDistribution)
        ):
            narrowed = _narrow(param_distribution, bound.low, bound.high)
            if narrowed is not None and narrowed.low == narrowed.high:
                return narrowed.low  # a box holding one point of its grid
            if narrowed is not None:
                return self._base.sample_independent(study, trial, param_name, narrowed)
        allowed = self._plan.choice_box.get(param_name)
        if allowed and isinstance(param_distribution, CategoricalDistribution):
            usable = [c for c in param_distribution.choices if c in allowed]
            if usable:
                for _ in range(_CATEGORICAL_TRIES):
                    value = self._base.sample_independent(
                        study, trial, param_name, param_distribution
                    )
                    if value in usable:
                        return value
                return usable[int(self._rng.integers(len(usable)))]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


def _internal_or_none(dist: BaseDistribution, value: Any) -> float | None:
    try:
        internal = dist.to_internal_repr(value)
    except (ValueError, TypeError):
        return None
    return internal if dist._contains(internal) else None


def _narrow(
    dist: FloatDistribution | IntDistribution, low: float, high: float
) -> FloatDistribution | IntDistribution | None:
    """``dist`` within ``[low, high]``: the points of its grid there (a single point is a
    distribution too), or ``None`` when the box holds none of them."""
    lo, hi = max(dist.low, low), min(dist.high, high)
    if isinstance(dist, IntDistribution):
        step = dist.step
        ilo = dist.low + int(np.ceil((lo - dist.low) / step)) * step
        ihi = dist.low + int(np.floor((hi - dist.low) / step)) * step
        if ilo > ihi:
            return None
        return IntDistribution(ilo, ihi, log=dist.log, step=step)
    if dist.step is not None:
        bounds = grid_bounds(dist.low, dist.step, lo, hi)
        if bounds is None:
            return None
        lo, hi = bounds
    if lo > hi:
        return None
    return FloatDistribution(float(lo), float(hi), log=dist.log, step=dist.step)


def _sampler(plan: WarmStartPlan | None, *, seed: int) -> BaseSampler:
    """TPE narrowed by ``plan`` (:class:`PlanSampler`), or plain TPE for no plan or one
    that narrows nothing (cost ceilings only: they reject configurations, not draws)."""
    base = TPESampler(seed=seed)
    if plan is None or (plan.is_empty and not plan.explore_every):
        return base
    return PlanSampler(base, plan, seed=seed)
