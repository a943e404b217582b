"""Freeze parameters that did not matter in history (fANOVA importances, seeded) to
their value in the best historical configuration; exploring trials still vary them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retune.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from retune.warmstart._base import History, WarmStartPlan, empty_plan


@dataclass(frozen=True, kw_only=True)
class FreezeUnimportant:
    """Freeze every parameter whose importance share is below ``min_share``.

    Importances are computed on normalised ranks (comparable across studies) over the
    parameters present in every historical trial valid in the current space;
    ``min_trials`` (counted among those valid trials) guards against reading noise as
    unimportance. A low share is evidence only for what history tried: a parameter it
    never varied, or a categorical with a choice it never tried (one the space gained),
    is left free.
    """

    min_share: float = 0.05
    min_trials: int = 15
    seed: int = 0
    name: str = "freeze_unimportant"

    def __post_init__(self) -> None:
        if not 0 < self.min_share < 1:
            raise ValueError(f"`min_share` must be in (0, 1), got {self.min_share}")

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        valid = [p for p in (space.project(t.params) for t in history.trials) if p is not None]
        if len(valid) < self.min_trials:
            return empty_plan(
                self.name,
                history,
                f"{len(valid)} of {len(history)} historical trials valid in space "
                f"{space.name!r} < min_trials {self.min_trials}: nothing frozen",
            )
        from retune._optuna import param_importances  # optuna is imported in one module only

        importances = param_importances(history, space, seed=self.seed)
        if not importances:
            return empty_plan(
                self.name,
                history,
                f"no importances: the objective does not vary with the parameters over the "
                f"{len(valid)} historical trials valid in space {space.name!r} (their values "
                f"are all equal, or so are their parameters): nothing frozen",
            )
        best = next(
            (p for p in (space.project(t.params) for t in history.best_first()) if p is not None),
            None,
        )
        declarations = space.declarations()
        frozen: dict[str, Any] = {}
        notes: list[str] = []
        for name, share in importances.items():
            if best is None or share >= self.min_share or name not in best:
                continue
            tried = [p[name] for p in valid if name in p]
            unknown = _untried(declarations[name], tried)
            if unknown is None:
                frozen[name] = best[name]
            else:
                notes.append(f"left {name!r} free (importance share {share:.3g}): {unknown}")
        return WarmStartPlan(
            strategies=(self.name,),
            frozen=frozen,
            importances=importances,
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=(f"froze {sorted(frozen)} (importance share < {self.min_share:g})", *notes),
        )


def _untried(decl: IntParam | FloatParam | CategoricalParam, tried: list[Any]) -> str | None:
    """Why history says nothing of the parameter's effect, or ``None`` when it does: a low
    importance share of a parameter history held constant, or of a categorical with a
    choice it never tried, is no evidence that the parameter does not matter."""
    values = dict.fromkeys(tried)
    if len(values) < 2:
        return f"history did not vary it (only {list(values)})"
    if isinstance(decl, CategoricalParam):
        missing = [c for c in decl.choices if c not in values]
        if missing:
            return f"history never tried {', '.join(repr(c) for c in missing)}"
    return None
