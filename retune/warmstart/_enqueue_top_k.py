"""Re-score the best configurations of earlier studies first (``study.enqueue_trial``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from retune.space import SearchSpace
from retune.warmstart._base import History, WarmStartPlan, empty_plan


@dataclass(frozen=True, kw_only=True)
class EnqueueTopK:
    """Enqueue the ``k`` best distinct historical configurations valid in the current
    space, then the best one of every branch they leave out.

    A branch is a choice that opens conditional parameters (an estimator family, a
    feature selector with its ``k``). History is ranked on the data before the change;
    after a concept change the best family may be another one, and re-scoring the best
    configuration of each family tells the sampler within a few trials which one now
    wins (a small portfolio, as in Feurer et al. 2015) instead of spending every
    enqueued trial on the old winner's neighbourhood. ``per_branch=False`` enqueues the
    top ``k`` only.

    A configuration is projected onto the current space: parameters the space dropped
    are removed, parameters it added are left to the sampler, and one whose value the
    space no longer allows (removed choice, moved bound) is skipped and counted.
    """

    k: int = 5
    per_branch: bool = True
    name: str = "enqueue_top_k"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"`k` must be >= 1, got {self.k}")

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        if not len(history):
            return empty_plan(self.name, history, "no history: nothing to enqueue")
        valid: list[dict[str, Any]] = []  # distinct projected configurations, best first
        seen: set[str] = set()
        skipped = 0
        for trial in history.best_first():
            projected = space.project(trial.params)
            if projected is None:
                skipped += 1
                continue
            key = json.dumps(projected, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                valid.append(projected)
        chosen = valid[: self.k]
        notes: list[str] = [f"enqueued the {len(chosen)} best historical configuration(s)"]
        if self.per_branch:
            added = []
            for name, choice in space.branches():
                if any(p.get(name) == choice for p in chosen):
                    continue
                best = next((p for p in valid if p.get(name) == choice), None)
                if best is not None:
                    chosen.append(best)
                    added.append(f"{name}={choice}")
            if added:
                notes.append(f"and the best of each branch they left out: {', '.join(added)}")
        if skipped:
            notes.append(f"skipped {skipped} configuration(s) invalid in space {space.name!r}")
        return WarmStartPlan(
            strategies=(self.name,),
            enqueue=tuple(chosen),
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=tuple(notes),
        )
