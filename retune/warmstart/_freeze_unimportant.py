"""Freeze parameters that did not matter in history (fANOVA importances, seeded) to
their value in the best historical configuration; exploring trials still vary them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retune.space import SearchSpace
from retune.warmstart._base import History, WarmStartPlan, empty_plan


@dataclass(frozen=True, kw_only=True)
class FreezeUnimportant:
    """Freeze every parameter whose importance share is below ``min_share``.

    Importances are computed on normalised ranks (comparable across studies) over the
    parameters present in every historical trial; ``min_trials`` guards against
    reading noise as unimportance.
    """

    min_share: float = 0.05
    min_trials: int = 15
    seed: int = 0
    name: str = "freeze_unimportant"

    def __post_init__(self) -> None:
        if not 0 < self.min_share < 1:
            raise ValueError(f"`min_share` must be in (0, 1), got {self.min_share}")

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        if len(history) < self.min_trials:
            return empty_plan(
                self.name,
                history,
                f"{len(history)} historical trials < {self.min_trials}: nothing frozen",
            )
        from retune._optuna import param_importances  # optuna is imported in one module only

        importances = param_importances(history, space, seed=self.seed)
        best = next(
            (p for p in (space.project(t.params) for t in history.best_first()) if p is not None),
            None,
        )
        frozen: dict[str, Any] = {}
        if best is not None:
            frozen = {
                name: best[name]
                for name, share in importances.items()
                if share < self.min_share and name in best
            }
        return WarmStartPlan(
            strategies=(self.name,),
            frozen=frozen,
            importances=importances,
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=(f"froze {sorted(frozen)} (importance share < {self.min_share:g})",),
        )
