"""A tuning job's warm-start plan, learned from the model's earlier studies."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

from monitor.objectives import Objective
from retune import load_history, study_progress
from retune.space import SearchSpace
from retune.warmstart import (
    Combined,
    EnqueueTopK,
    History,
    LearnedBox,
    WarmStartPlan,
    WarmStartStrategy,
)
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
    objective (a plan of notes only, if all were). A study tuned before studies recorded
    their objective is read as tuned for the one its version names
    (:func:`_read_unrecorded_objectives`)."""
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
    history, read = _read_unrecorded_objectives(
        store, model, load_history(storage, studies), objective
    )
    left_out = history.left_out_for(objective)
    if left_out is None:
        plan = strategies[kind].plan(history, space)
    else:
        same = history.tuned_for(objective)
        plan = strategies[kind].plan(same, space) if same.study_names else WarmStartPlan()
    notes = tuple(n for n in (missing, *read, left_out) if n is not None)
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


def _read_unrecorded_objectives(
    store: Store, model: str, history: History, objective: Objective
) -> tuple[History, tuple[str, ...]]:
    """``history`` with each study that recorded no objective (tuned by a release before
    studies recorded theirs) read as tuned for the objective the versions it registered
    name (``details.objective``), and the plan notes saying so.

    A version names its objective, not its parameters: the study is read as tuned for
    that objective without any, which is the job's only when the job's takes none (an
    accuracy's threshold may have been another). One whose versions name the job's
    objective, which takes parameters, or name different objectives, or that registered
    no version, is left out as recording none."""
    unrecorded = [n for n in history.study_names if history.objectives.get(n) is None]
    if not unrecorded:
        return history, ()
    named: dict[str, dict[int, str]] = {n: {} for n in unrecorded}
    for v in store.list_versions(model):  # oldest first
        name = v.details.get("objective")
        if v.study in named and isinstance(name, str):
            named[v.study][v.version] = name
    notes: list[str] = []
    read: dict[str, dict[str, Any]] = {}
    for study, names in named.items():
        if len(set(names.values())) > 1:
            each = ", ".join(f"v{v} {n}" for v, n in names.items())
            notes.append(
                f"{study} recorded no objective, and the versions it registered name "
                f"different ones ({each}): left out"
            )
        elif names:
            read[study] = {"name": next(iter(names.values())), "params": {}}
    kept = set(history.with_objectives(read).tuned_for(objective).study_names)
    for study, setup in list(read.items()):
        versions = ", ".join(f"v{v}" for v in named[study])
        if study not in kept and setup["name"] == objective.name:
            del read[study]  # the job's objective, with parameters the version does not name
            notes.append(
                f"{study} recorded no objective, and {versions} it registered names "
                f"{setup['name']} without its parameters: left out"
            )
        else:
            notes.append(
                f"{study} recorded no objective: read as {setup['name']}, the objective of "
                f"{versions} it registered"
            )
    return history.with_objectives(read), tuple(notes)
