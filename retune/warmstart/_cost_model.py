"""A serving-cost predictor learned from measured configurations, per estimator family,
that predicts only what the measurements show.

It used to answer with the nearest measured configuration of the family, whatever its
size, and with ``(0, 0)`` for a family with none measured. One served gradient boosting
of 200 trees x depth 5 (p99 1.82 ms against a 221 us ceiling) then rejected every
gradient boosting, 10 trees x depth 1 too (bare p99 0.65-1.2 x the logistic champion's,
a 2 KiB file); a random forest of 200 x depth 12 (bare p99 3-4 x the champion's, 4.4 MiB)
was predicted to cost nothing and accepted. Now:

* a configuration at least as big as a measured one (every size parameter of
  :data:`SIZE_PARAMETERS` as large, or as small where smaller is bigger) costs at least
  what that one cost: that alone may reject, from one sample;
* a configuration no bigger than a measured one costs at most what that one cost: one
  that passed the ceilings vouches for every configuration no bigger than it;
* with at least :data:`MIN_SAMPLES_TO_FIT` measured configurations of the family (of
  at least two sizes) the cost is fitted on a size proxy (trees x depth for latency,
  trees x 2**depth for memory) as a fixed part plus a power of the proxy, exponent in
  [0, 1], then held within the two bounds above. Past the largest measured proxy the
  part above the fixed one grows at least in proportion to the proxy (see :func:`_fit`);
* with fewer, or all of one size, no fixed part can be read off them: past the largest
  measured proxy the cost above a fixed part grows in proportion to the proxy from the
  largest measured one, the fixed part being the cheapest measured configuration of a
  family of one size (logistic, ridge: little more than the fixed part). One served
  forest of 20 trees x depth 4 (37 us, 8.6 MB) had 200 x 8 predicted at 37 us and 8.6 MB,
  under a ceiling of 1.5 x its own cost, and three of six trials trained at 16-19.5 MB,
  the best of them refused at promotion by ``max_memory_ratio``. With no such family
  measured it still is (predicted at least at the served cost, no more): reading the
  fixed part as 0 made a forest of twice the served size cost twice as much, 17 against
  a real 8.8 MB, and rejected 28 of 34 proposals, no bigger forest was ever served, and
  the family could never grow;
* anything else gets no prediction: ``nan``, which no ceiling rejects (the study's
  ``CostPredictor`` answers two floats; ``nan`` is the one that says "unknown"), and
  :meth:`FamilyCostPredictor.notes` says which families are not, or only partly,
  screened.

``monitor.ServingCostModel`` (a ridge on log hyperparameters) is not used: it fits all
families together with a one-hot family, so it predicts a family with no telemetry, and
nothing holds its predictions monotone in size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retune._errors import SearchSpaceError
from retune.space import SearchSpace
from retune.space._params import CategoricalParam
from retune.space._vocabulary import DEFAULTS, _resolve

#: The fixed part is read off a line through the samples (two parameters): two samples
#: fit any line exactly, so a day's p99 noise becomes the growth; the third is the first
#: that can contradict it.
MIN_SAMPLES_TO_FIT = 3

_TREES = (("gb_n_estimators", 1), ("gb_max_depth", 1))
_FOREST = (("forest_n_estimators", 1), ("forest_max_depth", 1), ("forest_min_samples_leaf", -1))
#: Per family, the parameters that make a served pipeline bigger (+1) or smaller (-1);
#: a family not named (logistic, ridge) has one size whatever its parameters.
SIZE_PARAMETERS: dict[str, tuple[tuple[str, int], ...]] = {
    "gradient_boosting": _TREES,
    "gradient_boosting_regressor": _TREES,
    "random_forest": _FOREST,
    "extra_trees": _FOREST,
    "random_forest_regressor": _FOREST,
    "extra_trees_regressor": _FOREST,
}


@dataclass(frozen=True, kw_only=True)
class CostSample:
    """One configuration as measured in production (a served version); a memory of 0
    is one not measured."""

    params: Mapping[str, Any]
    latency_p99_s: float
    memory_bytes: float


@dataclass(frozen=True)
class _Measured:
    pipeline: dict[str, Any]
    costs: tuple[float, float]  # latency, memory; nan when not measured


class FamilyCostPredictor:
    """``predict(params) -> (latency_p99_s, memory_bytes)``, ``nan`` where the samples
    of the family say nothing (see the module)."""

    def __init__(self, samples: Sequence[CostSample], families: Sequence[str]) -> None:
        self._families = tuple(families)
        self._by_family: dict[str, list[_Measured]] = {}
        for s in samples:
            resolved = _pipeline_of(s.params)
            if resolved is None:  # no hyperparameters, or ones the pipelines do not know
                continue
            costs = (_measured(s.latency_p99_s), _measured(s.memory_bytes))
            self._by_family.setdefault(resolved["estimator"], []).append(_Measured(resolved, costs))
        # every figure holds a part no size changes (onnxruntime's start-up, a per-call
        # overhead); a family of one size (logistic, ridge) measures little more than it
        sizeless = [
            m.costs
            for family, measured in self._by_family.items()
            if family not in SIZE_PARAMETERS
            for m in measured
        ]
        self._fixed: tuple[float | None, float | None] = (
            min((c[0] for c in sizeless if not math.isnan(c[0])), default=None),
            min((c[1] for c in sizeless if not math.isnan(c[1])), default=None),
        )

    def __call__(self, params: Mapping[str, Any]) -> tuple[float, float]:
        wanted = _pipeline_of(params)
        measured = [] if wanted is None else self._by_family.get(wanted["estimator"], [])
        if wanted is None or not measured:
            return math.nan, math.nan
        latency = self._predict(wanted, measured, 0)
        memory = self._predict(wanted, measured, 1)
        return latency, memory

    def notes(self) -> tuple[str, ...]:
        """What the plan says about families this predictor does not fully screen."""
        out = [
            f"no serving-cost telemetry for family {f}: not screened"
            for f in self._families
            if f not in self._by_family
        ]
        for family, measured in self._by_family.items():
            size = SIZE_PARAMETERS.get(family, ())
            sizes = {tuple(m.pipeline[name] for name, _ in size) for m in measured}
            n = len(measured)
            if size and (n < MIN_SAMPLES_TO_FIT or len(sizes) < 2):
                served = f"{n} served configuration{'s' if n > 1 else ''}"
                if n > 1 and len(sizes) == 1:
                    served += " of one size"
                past = (
                    "one past the largest served size (trees x depth for latency, trees x "
                    "2**depth / leaf size for memory) in proportion to that size above the "
                    "fixed part a served logistic or ridge measured"
                    if None not in self._fixed
                    else "none past it is predicted above the served cost, for want of the "
                    "fixed part every figure holds (a served logistic or ridge measures it): "
                    "under a ratio ceiling of the served cost such a one is not rejected, "
                    "and the guardrails judge it"
                )
                out.append(
                    f"family {family}: {served}, too few (< {MIN_SAMPLES_TO_FIT}, of two "
                    "sizes or more) to fit how its cost grows with its size: one at least as "
                    f"big as a served one is predicted to cost at least as much, {past}; any "
                    "other is not screened"
                )
        return tuple(out)

    def _predict(self, wanted: dict[str, Any], measured: list[_Measured], i: int) -> float:
        family = wanted["estimator"]
        known = [m for m in measured if not math.isnan(m.costs[i])]
        at_least = max(
            (m.costs[i] for m in known if _covers(family, wanted, m.pipeline)), default=-math.inf
        )
        at_most = min(
            (m.costs[i] for m in known if _covers(family, m.pipeline, wanted)), default=math.inf
        )
        fitted = _fit(family, known, wanted, i, self._fixed[i])
        value = max(fitted, at_least) if not math.isnan(fitted) else at_least
        value = min(value, at_most)  # a passing one no smaller vouches for it
        return value if math.isfinite(value) else math.nan


def family_cost_predictor(samples: Sequence[CostSample], space: SearchSpace) -> FamilyCostPredictor:
    """The predictor for ``samples`` (the served configurations); ``space`` names the
    families a study may sample, which :meth:`FamilyCostPredictor.notes` reports on.

    Both sides are read as the pipelines they build, defaults filled in (a served version
    may name only the hyperparameters it set). A sample without hyperparameters, or with
    ones the pipelines do not know, says nothing about any family and is left out."""
    decl = space.declarations().get("estimator")
    if isinstance(decl, CategoricalParam):
        families = [str(c) for c in decl.choices]
    else:
        families = [str(DEFAULTS["estimator"])]
    return FamilyCostPredictor(samples, families)


def _measured(value: float) -> float:
    return float(value) if math.isfinite(value) and value > 0 else math.nan


def _covers(family: str, big: Mapping[str, Any], small: Mapping[str, Any]) -> bool:
    """Whether ``big`` is at least as big as ``small`` in every size parameter."""
    return all(
        sign * (float(big[name]) - float(small[name])) >= 0
        for name, sign in SIZE_PARAMETERS.get(family, ())
    )


def _proxy(family: str, p: Mapping[str, Any], i: int) -> float:
    """Latency (``i == 0``) follows the nodes a row visits, trees x depth; memory
    (``i == 1``) the nodes stored, trees x 2**depth (fewer with bigger leaves)."""
    if family.startswith("gradient_boosting"):
        trees, depth, leaf = p["gb_n_estimators"], p["gb_max_depth"], 1
    elif family in SIZE_PARAMETERS:
        trees, depth = p["forest_n_estimators"], p["forest_max_depth"]
        leaf = p["forest_min_samples_leaf"]
    else:
        return 1.0
    return float(trees * depth) if i == 0 else float(trees) * 2.0 ** float(depth) / float(leaf)


def _fit(
    family: str,
    known: list[_Measured],
    wanted: Mapping[str, Any],
    i: int,
    sizeless: float | None,
) -> float:
    """cost = fixed + level x proxy**exponent, exponent in [0, 1]. With fewer than
    :data:`MIN_SAMPLES_TO_FIT` samples, or a single size among them, no fixed part can be
    read off them (two samples fit any line exactly): past the largest measured proxy the
    largest measured one's cost above ``sizeless`` (the cheapest measured of a family of
    one size, which measures little more than the fixed part) grown in proportion to the
    proxy, and ``nan`` up to it or with ``sizeless`` unknown (``None``).

    Every figure holds a part no size changes: onnxruntime's one-time start-up (about
    8 MiB) in every load memory, a per-call overhead in every p99. A power law fitted to
    such totals (the fit this replaced) read them as hardly growing at all (exponent
    0.02: a gradient boosting of 200 x 5 predicted 10.10 MiB, measured 13.86 MiB). The
    fixed part is the intercept of a least-squares line of cost on proxy, held within
    [0, the cheapest sample]; the power law is fitted, on log-log, to the cost above it.

    Past the largest measured proxy the cost above the fixed part grows at least in
    proportion from the largest measured one: the largest exponent the model allows (1),
    since one fitted on two to six small sizes extrapolates their noise. A cost that grows
    no faster than its proxy (trees that do not fill 2**depth, rows that leave a tree
    before its full depth) grows at most so, and the prediction errs high, not low (by
    up to the fixed part's own error times the extrapolation ratio when it is linear)."""
    if not known:
        return math.nan
    proxy = np.array([_proxy(family, m.pipeline, i) for m in known])
    cost = np.array([m.costs[i] for m in known])
    target = _proxy(family, wanted, i)
    largest = float(proxy.max())
    if len(known) < MIN_SAMPLES_TO_FIT or np.ptp(proxy) == 0:
        if target <= largest or sizeless is None:
            return math.nan
        top = float(cost[proxy == largest].max())
        fixed = min(sizeless, top)
        return fixed + (top - fixed) * target / largest
    slope = np.cov(proxy, cost, bias=True)[0, 1] / np.var(proxy)
    fixed = float(np.clip(cost.mean() - slope * proxy.mean(), 0.0, cost.min()))
    above = cost - fixed
    grows = above > 0
    if not grows.any():  # nothing measured costs more than the fixed part
        return fixed
    x, y = np.log(proxy[grows]), np.log(above[grows])
    exponent = 1.0  # one size above the fixed part: no shape to fit, the steepest allowed
    if np.ptp(x):
        exponent = float(np.clip(np.cov(x, y, bias=True)[0, 1] / np.var(x), 0.0, 1.0))
    level = float(y.mean() - exponent * x.mean())
    fitted = fixed + math.exp(level + exponent * math.log(target))
    if target > largest:
        top = float(above[proxy == largest].max())
        fitted = max(fitted, fixed + top * target / largest)
    return fitted


def _pipeline_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``params`` with the pipeline's defaults filled in, or ``None`` when they do not
    describe one (nothing named, an unknown name or choice)."""
    if not params:
        return None
    try:
        return _resolve(params)
    except SearchSpaceError:
        return None
