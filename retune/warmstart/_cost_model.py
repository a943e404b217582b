"""A serving-cost predictor learned from measured configurations: a configuration costs
what the nearest measured one of the same estimator family costs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retune._errors import SearchSpaceError
from retune.space import SearchSpace
from retune.space._params import FloatParam, IntParam
from retune.space._vocabulary import _resolve
from retune.warmstart._cost_constraint import CostPredictor


@dataclass(frozen=True, kw_only=True)
class CostSample:
    """One configuration as measured in production (a served version)."""

    params: Mapping[str, Any]
    latency_p99_s: float
    memory_bytes: float


def nearest_cost_predictor(samples: Sequence[CostSample], space: SearchSpace) -> CostPredictor:
    """``predict(params) -> (latency_p99_s, memory_bytes)`` of the nearest sample of the
    same estimator family as ``params``.

    Both sides are read as the pipelines they build, defaults filled in (a served version
    may name only the hyperparameters it set). The distance runs over every other
    parameter: a numeric one the space declares counts its difference as a share of its
    range (on a log scale where it is log-uniform), any other one 1 when it differs (a
    selector, a scaler, a value the space does not tune). A sample without
    hyperparameters, or with ones the pipelines do not know, says nothing about any
    family and is left out. With no sample of the family nothing is known: ``(0, 0)``,
    which no ceiling rejects."""
    numeric = {
        name: decl
        for name, decl in space.declarations().items()
        if isinstance(decl, IntParam | FloatParam)
    }
    kept = [(resolved, s) for s in samples if (resolved := _pipeline_of(s.params)) is not None]

    def predict(params: Mapping[str, Any]) -> tuple[float, float]:
        wanted = _pipeline_of(params)
        if wanted is None:
            return 0.0, 0.0
        best: CostSample | None = None
        best_distance = math.inf
        for resolved, sample in kept:
            if resolved["estimator"] != wanted["estimator"]:
                continue
            distance = sum(
                _gap(numeric.get(name), value, resolved[name]) ** 2
                for name, value in wanted.items()
                if name != "estimator"
            )
            if distance < best_distance:
                best, best_distance = sample, distance
        if best is None:
            return 0.0, 0.0
        return best.latency_p99_s, best.memory_bytes

    return predict


def _pipeline_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``params`` with the pipeline's defaults filled in, or ``None`` when they do not
    describe one (nothing named, an unknown name or choice)."""
    if not params:
        return None
    try:
        return _resolve(params)
    except SearchSpaceError:
        return None


def _gap(decl: IntParam | FloatParam | None, a: Any, b: Any) -> float:
    """|a - b| as a share of the declared range; 0 or 1 (equal or not) for a value the
    space does not declare as a number."""
    if a == b:
        return 0.0
    if decl is None or not isinstance(a, int | float) or not isinstance(b, int | float):
        return 1.0
    if decl.log and a > 0 and b > 0:
        return abs(math.log(a) - math.log(b)) / (math.log(decl.high) - math.log(decl.low))
    return abs(a - b) / (decl.high - decl.low)
