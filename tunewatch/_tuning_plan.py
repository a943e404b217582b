"""A tuning job's warm-start plan, learned from the model's earlier studies."""

from __future__ import annotations

import dataclasses
from typing import Literal

from monitor.objectives import Objective
from retune import load_history, study_progress
from retune.space import SearchSpace
from retune.warmstart import Combined, EnqueueTopK, LearnedBox, WarmStartPlan, WarmStartStrategy
from tunewatch.store import Store

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
    configurations otherwise); ``None`` with warm start off or no such study. The plan's
    notes count the studies left out (a plan of notes only, if all were)."""
    studies = [
        j.result["study"]
        for j in reversed(store.list_jobs(model=model, status="succeeded", limit=HISTORY_JOBS))
        if j.result and "study" in j.result
    ]
    studies = [h for h in studies if study_progress(storage, h) is not None]
    if kind == "none" or not studies:
        return None
    strategies: dict[str, WarmStartStrategy] = {
        "enqueue": EnqueueTopK(),
        "box": LearnedBox(),
        "combined": Combined(),
    }
    history = load_history(storage, studies)
    left_out = history.left_out_for(objective)
    if left_out is None:
        return strategies[kind].plan(history, space)
    same = history.tuned_for(objective)
    plan = strategies[kind].plan(same, space) if same.study_names else WarmStartPlan()
    return dataclasses.replace(plan, notes=(*plan.notes, left_out))
