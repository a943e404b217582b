"""Warm-start strategies (a family): history of earlier studies in, a plan out."""

from __future__ import annotations

from retune.warmstart._base import (
    PLAN_FORMAT_VERSION,
    CostCeiling,
    History,
    HistoryTrial,
    NumericBound,
    WarmStartPlan,
    WarmStartStrategy,
)
from retune.warmstart._combined import Combined
from retune.warmstart._cost_constraint import CostConstraint, CostPredictor
from retune.warmstart._cost_model import CostSample, family_cost_predictor
from retune.warmstart._enqueue_top_k import EnqueueTopK
from retune.warmstart._explore_share import ExploreShare
from retune.warmstart._freeze_unimportant import FreezeUnimportant
from retune.warmstart._learned_box import LearnedBox

__all__ = [
    "PLAN_FORMAT_VERSION",
    "Combined",
    "CostCeiling",
    "CostConstraint",
    "CostPredictor",
    "CostSample",
    "EnqueueTopK",
    "ExploreShare",
    "FreezeUnimportant",
    "History",
    "HistoryTrial",
    "LearnedBox",
    "NumericBound",
    "WarmStartPlan",
    "WarmStartStrategy",
    "family_cost_predictor",
]
