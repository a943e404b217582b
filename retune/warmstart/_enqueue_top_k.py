"""Re-score the best configurations of earlier studies first (``study.enqueue_trial``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from retune.space import SearchSpace
from retune.warmstart._base import History, WarmStartPlan, empty_plan


@dataclass(frozen=True, kw_only=True)
class EnqueueTopK:
    """Enqueue the ``k`` best distinct historical configurations valid in the current space.

    A configuration is projected onto the current space: parameters the space dropped
    are removed, parameters it added are left to the sampler, and one whose value the
    space no longer allows (removed choice, moved bound) is skipped and counted.
    """

    k: int = 5
    name: str = "enqueue_top_k"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"`k` must be >= 1, got {self.k}")

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        if not len(history):
            return empty_plan(self.name, history, "no history: nothing to enqueue")
        chosen: list[dict[str, Any]] = []
        seen: set[str] = set()
        skipped = 0
        for trial in history.best_first():
            if len(chosen) == self.k:
                break
            projected = space.project(trial.params)
            if projected is None:
                skipped += 1
                continue
            key = json.dumps(projected, sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            chosen.append(projected)
        notes: tuple[str, ...] = (f"enqueued {len(chosen)} historical configuration(s)",)
        if skipped:
            notes += (f"skipped {skipped} configuration(s) invalid in space {space.name!r}",)
        return WarmStartPlan(
            strategies=(self.name,),
            enqueue=tuple(chosen),
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=notes,
        )
