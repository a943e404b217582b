"""Keep exploring: a share of the sampled trials ignores the box and frozen parameters,
so an optimum that moved out of the box after drift is still found."""

from __future__ import annotations

from dataclasses import dataclass

from retune.space import SearchSpace
from retune.warmstart._base import History, WarmStartPlan


@dataclass(frozen=True, kw_only=True)
class ExploreShare:
    """Every ``round(1 / share)``-th sampled trial samples the full space.

    ``share`` is 1 (every trial) or at most 0.5: past one half, every k-th trial is every
    trial or every other one, and 0.75 explored every trial (the box never applied)."""

    share: float = 0.25
    name: str = "explore_share"

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"`share` must be in (0, 1], got {self.share}")
        if 0.5 < self.share < 1:
            raise ValueError(
                f"`share` must be 1 or at most 0.5, got {self.share}: every k-th trial "
                "explores, so a share past one half would be every trial or every other"
            )

    @property
    def every(self) -> int:
        return max(1, round(1 / self.share))

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        return WarmStartPlan(
            strategies=(self.name,),
            explore_every=self.every,
            history_studies=history.study_names,
            n_history_trials=len(history),
            notes=(f"every {_ordinal(self.every)}sampled trial explores the full space",),
        )


def _ordinal(k: int) -> str:
    """``k`` as the ordinal before "sampled trial", with its space: "" for 1 (every
    trial), "2nd ", "3rd ", "11th ", "21st "."""
    if k == 1:
        return ""
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix} "
