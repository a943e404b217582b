"""From earlier studies to a warm-start plan."""

from __future__ import annotations

from collections.abc import Sequence

from retune._optuna import load_history as _load
from retune.space import SearchSpace
from retune.warmstart import History, WarmStartPlan, WarmStartStrategy


def load_history(storage: str, study_names: Sequence[str]) -> History:
    """Completed trials of ``study_names`` in ``storage`` (oldest study first), with ranks
    normalised within each study. Raises :class:`~retune.WarmStartError` for a missing study."""
    return _load(storage, study_names)


def plan_warm_start(
    strategy: WarmStartStrategy,
    *,
    storage: str,
    history_studies: Sequence[str],
    space: SearchSpace,
) -> WarmStartPlan:
    """Load the history of ``history_studies`` and let ``strategy`` plan for ``space``."""
    return strategy.plan(load_history(storage, history_studies), space)
