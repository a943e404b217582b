"""Making a better model: search spaces, leakage-safe CV, warm-started budgeted Optuna
studies and ONNX export with a parity gate.

Sub-packages: :mod:`retune.space` (search spaces, pipelines), :mod:`retune.cv` (CV
schemes, fold scores), :mod:`retune.warmstart` (strategies and plans).
"""

from __future__ import annotations

from retune._budget import Budget, BudgetTracker, PrunerKind, StopReason
from retune._errors import (
    CVError,
    ExportError,
    ParityError,
    RetuneError,
    SearchSpaceError,
    StudyError,
    WarmStartError,
)
from retune._export import check_parity, to_onnx
from retune._history import load_history, plan_warm_start
from retune._optuna import (
    MIN_IMPORTANCE_TRIALS,
    StudyImportances,
    StudyProgress,
    study_importances,
    study_progress,
)
from retune._refit import ExportedModel, refit_and_export
from retune._study import TuningResult, run_study

__all__ = [
    "MIN_IMPORTANCE_TRIALS",
    "Budget",
    "BudgetTracker",
    "CVError",
    "ExportError",
    "ExportedModel",
    "ParityError",
    "PrunerKind",
    "RetuneError",
    "SearchSpaceError",
    "StopReason",
    "StudyError",
    "StudyImportances",
    "StudyProgress",
    "TuningResult",
    "WarmStartError",
    "check_parity",
    "load_history",
    "plan_warm_start",
    "refit_and_export",
    "run_study",
    "study_importances",
    "study_progress",
    "to_onnx",
]
