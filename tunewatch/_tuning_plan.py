"""A tuning job's warm-start plan, learned from the model's earlier studies, and the
``tuning.warm_start`` mode a plan was built with (:func:`plan_mode`)."""

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
    FreezeUnimportant,
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

#: The strategy a plan built with warm start off (``tuning.warm_start: none``) names: the
#: plan is stored with the study, so the worker that finishes a job begun with warm start
#: off says so, whatever its own config.
WARM_START_OFF = "warm_start_off"

# The mode a plan's first strategy says it was built with.
_MODE_OF_STRATEGY: dict[str, WarmStartKind] = {
    WARM_START_OFF: "none",
    "enqueue_top_k": "enqueue",
    "learned_box": "box",
    "combined": "combined",
}


def warm_start_plan(
    store: Store,
    storage: str,
    model: str,
    *,
    kind: WarmStartKind,
    space: SearchSpace,
    objective: Objective,
    freeze_below: float | None = None,
    seed: int = 0,
    archive: str | None = None,
) -> WarmStartPlan | None:
    """The warm start learned from the studies of ``model``'s last succeeded jobs still in
    ``storage`` that were tuned for ``objective`` (another objective's losses rank
    configurations otherwise); ``None`` with no earlier study. With warm start off, a plan
    of nothing but its :data:`WARM_START_OFF` strategy (it samples as no plan does), so
    that the study records the mode (:func:`plan_mode`). With ``freeze_below``
    (``tuning.freeze_unimportant_below``; ``box`` and ``combined`` only), parameters whose
    fANOVA importance share over the history is below it are frozen
    (:class:`~retune.warmstart.FreezeUnimportant`, seeded with ``seed``). The plan's
    notes count the studies left out, missing from ``storage`` or tuned for another
    objective (a plan of notes only, if all were). A study tuned before studies recorded
    their objective is read as tuned for the one its version names
    (:func:`_read_unrecorded_objectives`). A study archived (``archive``:
    ``Config.tuning_archive_url``; :mod:`tunewatch._study_archive`) is read from the
    archive, as it was from ``storage``."""
    if kind == "none":
        return WarmStartPlan(strategies=(WARM_START_OFF,))
    if freeze_below is not None and kind not in ("box", "combined"):
        raise ValueError(
            f"`freeze_below` ({freeze_below}) applies to warm start `box` or `combined`, "
            f"got {kind!r}"
        )
    earlier = [
        j.result["study"]
        for j in reversed(store.list_jobs(model=model, status="succeeded", limit=HISTORY_JOBS))
        if j.result and "study" in j.result
    ]
    studies = [h for h in earlier if study_progress(storage, h, archive=archive) is not None]
    missing = _missing_note(model, [h for h in earlier if h not in studies])
    if not studies:
        return None if missing is None else WarmStartPlan(notes=(missing,))
    freeze = None if freeze_below is None else FreezeUnimportant(min_share=freeze_below, seed=seed)
    strategies: dict[str, WarmStartStrategy] = {
        "enqueue": EnqueueTopK(),
        "box": LearnedBox() if freeze is None else _BoxAndFreeze(freeze=freeze),
        "combined": Combined(freeze=freeze),
    }
    history, read = _read_unrecorded_objectives(
        store, model, load_history(storage, studies, archive=archive), objective
    )
    left_out = history.left_out_for(objective)
    if left_out is None:
        plan = strategies[kind].plan(history, space)
    else:
        same = history.tuned_for(objective)
        plan = strategies[kind].plan(same, space) if same.study_names else WarmStartPlan()
    notes = tuple(n for n in (missing, *read, left_out) if n is not None)
    return dataclasses.replace(plan, notes=(*plan.notes, *notes)) if notes else plan


def plan_mode(plan: WarmStartPlan | None) -> WarmStartKind | None:
    """The ``tuning.warm_start`` mode ``plan`` was built with, as its first strategy names
    it; ``None`` when it names none: a plan that learned from no earlier study (built with
    warm start on, or by a release before plans built with it off said so), or no plan."""
    if plan is None or not plan.strategies:
        return None
    return _MODE_OF_STRATEGY.get(plan.strategies[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class _BoxAndFreeze:
    """``tuning.warm_start: box`` with freezing: the learned box, and the parameters
    history shows unimportant frozen."""

    freeze: FreezeUnimportant
    name: str = "learned_box"

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan:
        return LearnedBox().plan(history, space).merged(self.freeze.plan(history, space))


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
