"""A serving-cost predictor learned from measured configurations: a configuration costs
what the nearest measured one on the same branches (estimator family, selector …) costs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retune.space import SearchSpace
from retune.space._params import CategoricalParam, FloatParam, IntParam
from retune.warmstart._cost_constraint import CostPredictor


@dataclass(frozen=True, kw_only=True)
class CostSample:
    """One configuration as measured in production (a served version)."""

    params: Mapping[str, Any]
    latency_p99_s: float
    memory_bytes: float


def nearest_cost_predictor(samples: Sequence[CostSample], space: SearchSpace) -> CostPredictor:
    """``predict(params) -> (latency_p99_s, memory_bytes)`` of the nearest sample that
    made the same branch choices as ``params`` (numeric distance scaled by each range,
    on a log scale where the parameter is log-uniform). With no such sample nothing is
    known: ``(0, 0)``, which no ceiling rejects."""
    parents = {name for name, _ in space.branches()}
    kept = list(samples)

    def predict(params: Mapping[str, Any]) -> tuple[float, float]:
        active = space.active(params)
        branch = {p: params[p] for p in parents if p in params}
        best: CostSample | None = None
        best_distance = math.inf
        for sample in kept:
            if any(sample.params.get(p) != v for p, v in branch.items()):
                continue
            distance = sum(
                _gap(decl, params.get(name), sample.params.get(name)) ** 2
                for name, decl in active.items()
                if not isinstance(decl, CategoricalParam)
            )
            if distance < best_distance:
                best, best_distance = sample, distance
        if best is None:
            return 0.0, 0.0
        return best.latency_p99_s, best.memory_bytes

    return predict


def _gap(decl: IntParam | FloatParam, a: Any, b: Any) -> float:
    """|a - b| as a share of the parameter's range (1 when either is missing)."""
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return 1.0
    if decl.log and a > 0 and b > 0:
        return abs(math.log(a) - math.log(b)) / (math.log(decl.high) - math.log(decl.low))
    return abs(a - b) / (decl.high - decl.low)
