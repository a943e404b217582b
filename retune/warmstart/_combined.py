"""The default warm start: enqueue the top-k, narrow to a learned box, keep exploring
(and, given ceilings, reject configurations predicted too costly to serve)."""

from __future__ import annotations

from dataclasses import dataclass, field

from retune.space import SearchSpace
from retune.warmstart._base import History, WarmStartPlan, WarmStartStrategy
from retune.warmstart._cost_constraint import CostConstraint
from retune.warmstart._enqueue_top_k import EnqueueTopK
from retune.warmstart._explore_share import ExploreShare
from retune.warmstart._freeze_unimportant import FreezeUnimportant
from retune.warmstart._learned_box import LearnedBox


@dataclass(frozen=True, kw_only=True)
class Combined:
    """Defaults guard against negative transfer (REFERENCE.md; ``bench/warmstart.py``):
    the box narrows numeric ranges only, with a wide margin, and a third of the sampled
    trials explore the full space."""

    enqueue: EnqueueTopK = field(default_factory=EnqueueTopK)
    box: LearnedBox = field(default_factory=lambda: LearnedBox(margin=0.25, restrict_choices=False))
    explore: ExploreShare = field(default_factory=lambda: ExploreShare(share=1 / 3))
    freeze: FreezeUnimportant | None = None
    cost: CostConstraint | None = None
    name: str = "combined"

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        plan = WarmStartPlan(strategies=(self.name,))
        parts: list[WarmStartStrategy | None] = [self.enqueue, self.box, self.explore]
        for part in [*parts, self.freeze, self.cost]:
            if part is not None:
                plan = plan.merged(part.plan(history, space))
        return plan
