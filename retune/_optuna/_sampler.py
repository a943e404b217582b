"""The study's sampler: TPE drawing inside a warm-start plan's box, honouring its frozen
parameters and letting a share of trials explore the full space, each trial with
randomness of its own derived from the tuning seed and the trial's number.

Derived per trial, not per worker: a study stopped and resumed (or a worker restarted)
proposes, trial by trial, what the uninterrupted study proposed on the same history, and
every trial can be replayed from the study's recorded seed (:data:`SAMPLER_SEED_RULE`);
workers joining one study propose different points, their trials' numbers differing.
Which history a trial sees (the trials finished before it) is the only other input, so
a study several workers share is reproducible trial by trial only as far as their
timing is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

#: How trial ``n`` of a study tuned with ``seed`` draws, as recorded with the study.
SAMPLER_SEED_RULE = (
    "trial n samples with TPESampler(seed=s) (its start-up RandomSampler too) and draws "
    "the warm-start plan's own picks with numpy.random.default_rng(s), where "
    "s = int(numpy.random.SeedSequence([seed, n]).generate_state(1)[0])"
)


def trial_seed(seed: int, number: int) -> int:
    """The seed trial ``number`` of a study tuned with ``seed`` samples with
    (:data:`SAMPLER_SEED_RULE`): 32 bits, as numpy's legacy ``RandomState`` (Optuna's)
    takes."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Hands each trial to a sampler ``make`` builds for it, seeded with
    :func:`trial_seed` of ``seed`` and the trial's number, so that a trial's draws depend on
    the study's seed, the trial's number and the history it sees, not on which worker runs
    it nor on the trials that worker ran before.

    One trial at a time: Optuna calls :meth:`before_trial` as a trial begins, then the
    sampling methods and :meth:`after_trial` for that trial (a study here runs one trial
    at a time per process, ``n_jobs=1``)."""

    def __init__(self, make: Callable[[int], BaseSampler], *, seed: int) -> None:
        self._make = make
        self._seed = seed
        self._number: int | None = None
        self._current: BaseSampler | None = None

    def _for(self, trial: FrozenTrial, *, fresh: bool = False) -> BaseSampler:
        if fresh or self._current is None or self._number != trial.number:
            self._current = self._make(trial_seed(self._seed, trial.number))
            self._number = trial.number
        return self._current

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial, fresh=True).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._current = self._number = None

    def reseed_rng(self) -> None:
        """Nothing to reseed: each trial's generators are derived from the study's seed and
        the trial's number, and reseeding them from entropy (as Optuna does before running
        trials in ``n_jobs`` threads, which this study does not) would make the trial
        unrepeatable."""


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
    that narrows nothing (cost ceilings only: they reject configurations, not draws),
    seeded per trial from ``seed`` (:class:`TrialSeededSampler`)."""
    if plan is None or (plan.is_empty and not plan.explore_every):
        return TrialSeededSampler(_tpe, seed=seed)
    narrowing = plan

    def make(seed_of_trial: int) -> BaseSampler:
        return PlanSampler(_tpe(seed_of_trial), narrowing, seed=seed_of_trial)

    return TrialSeededSampler(make, seed=seed)


def _tpe(seed: int) -> BaseSampler:
    return TPESampler(seed=seed)
