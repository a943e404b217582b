"""A tuning job's warm-start plan, learned from the model's earlier studies."""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

from monitor.objectives import Objective
from retune import load_history, study_progress
from retune.space import SearchSpace
from retune.warmstart import Combined, EnqueueTopK, LearnedBox, WarmStartPlan, WarmStartStrategy
from tunewatch.store import Store

logger = logging.getLogger(__name__)

WarmStartKind = Literal["none", "enqueue", "box", "combined"]

# The succeeded jobs whose studies a plan learns from, newest first.
HISTORY_JOBS = 20


def warm_start_plan(
    store: Store,
    storage: str,
    model: str,
    *,
    kind: WarmStartKind,
    space: SearchSpace,
    objective: Objective,
) -> WarmStartPlan | None:
    """The warm start learned from the studies of ``model``'s last succeeded jobs still in
    ``storage`` that were tuned for ``objective`` (another objective's losses rank
    configurations otherwise); ``None`` with warm start off or no earlier study. The plan's
    notes count the studies left out, missing from ``storage`` or tuned for another
    objective (a plan of notes only, if all were)."""
    if kind == "none":
        return None
    earlier = [
        j.result["study"]
        for j in reversed(store.list_jobs(model=model, status="succeeded", limit=HISTORY_JOBS))
        if j.result and "study" in j.result
    ]
    studies = [h for h in earlier if study_progress(storage, h) is not None]
    missing = _missing_note(model, [h for h in earlier if h not in studies])
    if not studies:
        return None if missing is None else WarmStartPlan(notes=(missing,))
    strategies: dict[str, WarmStartStrategy] = {
        "enqueue": EnqueueTopK(),
        "box": LearnedBox(),
        "combined": Combined(),
    }
    history = load_history(storage, studies)
    left_out = history.left_out_for(objective)
    if left_out is None:
        plan = strategies[kind].plan(history, space)
    else:
        same = history.tuned_for(objective)
        plan = strategies[kind].plan(same, space) if same.study_names else WarmStartPlan()
    notes = tuple(n for n in (missing, left_out) if n is not None)
    return dataclasses.replace(plan, notes=(*plan.notes, *notes)) if notes else plan


def _missing_note(model: str, missing: list[str]) -> str | None:
    """A plan note (and a warning) naming the earlier succeeded jobs' studies this Optuna
    storage does not hold, or ``None`` when it holds them all."""
    if not missing:
        return None
    logger.warning(
        "warm start of model %r leaves out %d earlier studies missing from this Optuna "
        "storage (%s): tuned into another host's storage? Set tuning.storage_url to a "
        "storage every host shares",
        model,
        len(missing),
        ", ".join(missing),
    )
    return (
        f"left out {len(missing)} earlier stud{'y' if len(missing) == 1 else 'ies'} not in "
        f"this Optuna storage, tuned into another (another host's default "
        f"<data_dir>/optuna.db, with tuning.storage_url unset, or a storage since changed): "
        f"{', '.join(missing)}"
    )
