"""The only part of :mod:`retune` importing Optuna; it translates Optuna's errors, and
those of the storage beneath it (an RDB's through SQLAlchemy, a journal file's).

It opens (or joins) studies on an RDB URL or a journal file, applies a
:class:`~retune.warmstart.WarmStartPlan` through a sampler wrapper, reads history and
computes importances (of history for warm start, of a finished study for its report).
Optuna's experimental features used here (heartbeats, stale-trial retry,
``fail_stale_trials``) are used knowingly: their ``ExperimentalWarning`` is silenced around
those calls only.

A front over one module per job: :mod:`._storage` (opening, closing, translating errors),
:mod:`._schema` (Optuna's schema check on opening, its head revision read once),
:mod:`._sampler` (the study's sampler: plan-aware, each trial's randomness derived from
the tuning seed and its number), :mod:`._handles` (a worker's study and
trials), :mod:`._reads` (history, its importances, progress), :mod:`._importances` (a
finished study's importances), :mod:`._logs` (Optuna's log of a trial failed on purpose,
on one line), :mod:`._pins` (what a shared study pins for its workers: its token, its
heartbeat interval and its sampler seed), :mod:`._archive` (moving a finished study to
an archive storage, which the readers of :mod:`._reads` fall back to).
"""

from retune._optuna._archive import archive_study, study_names
from retune._optuna._handles import (
    OUTCOME,
    RUN_ATTR,
    StudyHandle,
    TrialHandle,
    TrialRecord,
    open_study,
    ran,
    rebuild_sampler,
)
from retune._optuna._importances import (
    MIN_IMPORTANCE_TRIALS,
    StudyImportances,
    study_importances,
)
from retune._optuna._pins import SAMPLER_SEED_ATTR, StudyPins, begin_study, study_pins
from retune._optuna._reads import StudyProgress, load_history, param_importances, study_progress
from retune._optuna._sampler import PlanSampler, _narrow
from retune._optuna._storage import (
    MAX_STALE_RETRIES,
    STALE_AFTER_HEARTBEATS,
    FailTrial,
    PruneTrial,
    TrialLost,
    _is_schema_setup_collision,
    close_storage,
    make_storage,
)

__all__ = [
    "MAX_STALE_RETRIES",
    "MIN_IMPORTANCE_TRIALS",
    "OUTCOME",
    "RUN_ATTR",
    "SAMPLER_SEED_ATTR",
    "STALE_AFTER_HEARTBEATS",
    "FailTrial",
    "PlanSampler",
    "PruneTrial",
    "StudyHandle",
    "StudyImportances",
    "StudyPins",
    "StudyProgress",
    "TrialHandle",
    "TrialLost",
    "TrialRecord",
    "_is_schema_setup_collision",
    "_narrow",
    "archive_study",
    "begin_study",
    "close_storage",
    "load_history",
    "make_storage",
    "open_study",
    "param_importances",
    "ran",
    "rebuild_sampler",
    "study_importances",
    "study_names",
    "study_pins",
    "study_progress",
]
