"""Serving-cost ceilings: configurations predicted too slow or too big are rejected
before training. The predictor (from production telemetry per hyperparameter set) is
handed to :func:`retune.run_study`; the plan records only the ceilings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from retune.space import SearchSpace
from retune.warmstart._base import CostCeiling, History, WarmStartPlan

CostPredictor = Callable[[Mapping[str, Any]], tuple[float, float]]
"""``predict(params) -> (latency_p99_s, memory_bytes)``."""


@dataclass(frozen=True, kw_only=True)
class CostConstraint:
    max_latency_p99_s: float | None = None
    max_memory_bytes: int | None = None
    name: str = "cost_constraint"

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        ceiling = CostCeiling(
            max_latency_p99_s=self.max_latency_p99_s, max_memory_bytes=self.max_memory_bytes
        )
        return WarmStartPlan(
            strategies=(self.name,),
            cost=ceiling,
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=(
                f"reject configurations predicted over p99 {self.max_latency_p99_s}s "
                f"or {self.max_memory_bytes} B",
            ),
        )
