"""From earlier studies to a warm-start plan."""

from __future__ import annotations

from collections.abc import Sequence

from retune._optuna import load_history as _load
from retune.space import SearchSpace
from retune.warmstart import History, WarmStartPlan, WarmStartStrategy


def load_history(
    storage: str, study_names: Sequence[str], *, archive: str | None = None
) -> History:
    """Completed trials of ``study_names`` in ``storage`` (oldest study first), with ranks
    normalised within each study; a study missing from ``storage`` is read from
    ``archive`` (:func:`~retune.archive_study`), when one is given. Raises
    :class:`~retune.WarmStartError` for a missing study."""
    return _load(storage, study_names, archive=archive)


def plan_warm_start(
    strategy: WarmStartStrategy,
    *,
    storage: str,
    history_studies: Sequence[str],
    space: SearchSpace,
    archive: str | None = None,
) -> WarmStartPlan:
    """Load the history of ``history_studies`` (from ``archive`` for those archived) and
    let ``strategy`` plan for ``space``."""
    return strategy.plan(load_history(storage, history_studies, archive=archive), space)
