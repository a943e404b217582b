"""A learned search box (Perrone et al., 2019, "Learning search spaces for Bayesian
optimization"): the bounding box of the best historical configurations, widened by a
margin — in log space for log parameters — and clipped to the current space.

The optimum may have moved after drift, so a box is only safe with a margin and with
exploration of the full space beside it (:class:`ExploreShare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from retune.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from retune.space._params import grid_box
from retune.warmstart._base import (
    History,
    NumericBound,
    WarmStartPlan,
    empty_plan,
    from_log_or_linear,
    log_or_linear,
    quantile_best,
)


@dataclass(frozen=True, kw_only=True)
class LearnedBox:
    """Box around the best ``top_fraction`` of each earlier study (at least ``min_configs``),
    among its configurations valid in the current space (projected onto it, and ranked
    again among themselves): a space edit that invalidates history's best, such as one
    bound narrowed past them, leaves the box to the best still valid, not to the full
    space for every parameter.

    ``margin`` widens each numeric range by that share of the *full* range on each side;
    a range on a grid (an integer, a float with a ``step``) is then rounded outwards to
    grid points, so the box holds at least two of them and is recorded as it is searched.
    Categorical choices are restricted to those seen among the best configurations
    that the current space still offers, and those history never tried (a choice the
    space gained: history is no evidence against it); if none remain, the parameter is
    not restricted.
    ``restrict_choices=False`` narrows numeric ranges only: after a concept change the
    best estimator family or preprocessing choice itself may move, and a categorical
    restriction then excludes the new optimum from every non-exploring trial.

    A conditional parameter none of the best configurations has (the parameters of a
    family that did not win) is boxed around the best ``top_fraction`` of the
    configurations that do have it: if that family wins after a change, its trials
    start from where it did best, not from its whole range.
    """

    top_fraction: float = 0.2
    min_configs: int = 3
    margin: float = 0.1
    restrict_choices: bool = True
    name: str = "learned_box"

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"`top_fraction` must be in (0, 1], got {self.top_fraction}")
        if self.min_configs < 1:
            raise ValueError(f"`min_configs` must be >= 1, got {self.min_configs}")
        if not 0 <= self.margin:
            raise ValueError(f"`margin` must be >= 0, got {self.margin}")

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        if not len(history):
            return empty_plan(self.name, history, "no history: full space")
        # the best of the configurations still valid here: a space edit that invalidates
        # history's best (one bound narrowed) leaves the others' boxes to the next best
        valid_history = _valid_in(history, space)
        if not len(valid_history):
            return empty_plan(
                self.name,
                history,
                f"no historical configuration is valid in space {space.name!r}: full space",
            )
        best = [
            dict(t.params)
            for t in quantile_best(valid_history, self.top_fraction, self.min_configs)
        ]
        n_invalid_best = sum(
            space.project(t.params) is None
            for t in quantile_best(history, self.top_fraction, self.min_configs)
        )
        bounds: list[NumericBound] = []
        choices: dict[str, tuple[Any, ...]] = {}
        per_branch: list[str] = []
        gridded: list[str] = []
        untried: list[str] = []
        valid = [dict(t.params) for t in valid_history.trials]
        for name, decl in space.declarations().items():
            seen = [p[name] for p in best if name in p]
            if not seen and not isinstance(decl, CategoricalParam):
                seen = self._best_of_branch(valid_history, name)
                if seen:
                    per_branch.append(name)
            if not seen:
                continue
            if isinstance(decl, CategoricalParam):
                if not self.restrict_choices:
                    continue
                # a choice history never tried (one the space gained) is no worse for it
                tried = {repr(p[name]) for p in valid if name in p}
                fresh = [c for c in decl.choices if repr(c) not in tried]
                kept = tuple(c for c in decl.choices if c in seen or c in fresh)
                if kept and len(kept) < len(decl.choices):
                    choices[name] = kept
                    if fresh:
                        untried.append(f"{name}: {', '.join(map(repr, fresh))}")
                continue
            lo = log_or_linear(min(seen), decl.log)
            hi = log_or_linear(max(seen), decl.log)
            full_lo = log_or_linear(decl.low, decl.log)
            full_hi = log_or_linear(decl.high, decl.log)
            pad = self.margin * (full_hi - full_lo)
            low = from_log_or_linear(max(full_lo, lo - pad), decl.log)
            high = from_log_or_linear(min(full_hi, hi + pad), decl.log)
            if isinstance(decl, IntParam):
                low, high = float(math.floor(low)), float(math.ceil(high))
            low, high = max(low, decl.low), min(high, decl.high)
            if low >= high:  # a single value and no margin: keep a usable interval
                continue
            if decl.step is not None and (isinstance(decl, FloatParam) or decl.step > 1):
                # the sampler draws grid points only: record the box as it is searched
                snapped = grid_box(decl.low, decl.high, decl.step, low, high)
                if snapped is None:  # the grid holds one point: nothing to narrow
                    continue
                if snapped != (low, high):
                    gridded.append(f"{name} [{snapped[0]:g}, {snapped[1]:g}]")
                low, high = snapped
            bounds.append(NumericBound(name=name, low=float(low), high=float(high)))
        notes = [f"box from {len(best)} best configuration(s), margin {self.margin:g}"]
        if n_invalid_best:
            notes.append(
                f"left out {n_invalid_best} best configuration(s) invalid in space "
                f"{space.name!r}: boxed around the best of the {len(valid)} valid ones"
            )
        if per_branch:
            notes.append(f"boxed around the best of their own branch: {', '.join(per_branch)}")
        if gridded:
            notes.append(
                "widened outwards to the grid of their step (at least two grid points): "
                + ", ".join(gridded)
            )
        if untried:
            notes.append(f"kept the choices history never tried: {'; '.join(untried)}")
        return WarmStartPlan(
            strategies=(self.name,),
            numeric_box=tuple(bounds),
            choice_box=choices,
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=tuple(notes),
        )

    def _best_of_branch(self, valid_history: History, name: str) -> list[Any]:
        """Values of ``name`` in the best ``top_fraction`` of the (valid) trials that have it."""
        having = [t.params[name] for t in valid_history.best_first() if name in t.params]
        keep = max(self.min_configs, math.ceil(self.top_fraction * len(having)))
        return having[:keep]


def _valid_in(history: History, space: SearchSpace) -> History:
    """``history``'s configurations valid in ``space``, projected onto it and ranked again
    within their own study among the valid ones."""
    kept = [
        replace(t, params=p) for t in history.trials if (p := space.project(t.params)) is not None
    ]
    return History.from_trials(kept, objectives=history.objectives)
