"""Making a better model: search spaces, leakage-safe CV, warm-started budgeted Optuna
studies and ONNX export with a parity gate.

Sub-packages: :mod:`retune.space` (search spaces, pipelines), :mod:`retune.cv` (CV
schemes, fold scores), :mod:`retune.warmstart` (strategies and plans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from retune._budget import Budget, BudgetTracker, PrunerKind, StopReason
    from retune._errors import (
        BudgetError,
        CVError,
        ExportError,
        ParityError,
        RetuneError,
        SearchSpaceError,
        StudyError,
        StudyStorageUnavailableError,
        WarmStartError,
    )
    from retune._export import check_parity, to_onnx
    from retune._history import load_history, plan_warm_start
    from retune._optuna import (
        MIN_IMPORTANCE_TRIALS,
        StudyImportances,
        StudyPins,
        StudyProgress,
        archive_study,
        begin_study,
        study_importances,
        study_names,
        study_pins,
        study_progress,
    )
    from retune._refit import ExportedModel, check_classes, refit_and_export
    from retune._study import TuningResult, run_study

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "Budget": "retune._budget",
    "BudgetTracker": "retune._budget",
    "PrunerKind": "retune._budget",
    "StopReason": "retune._budget",
    "BudgetError": "retune._errors",
    "CVError": "retune._errors",
    "ExportError": "retune._errors",
    "ParityError": "retune._errors",
    "RetuneError": "retune._errors",
    "SearchSpaceError": "retune._errors",
    "StudyError": "retune._errors",
    "StudyStorageUnavailableError": "retune._errors",
    "WarmStartError": "retune._errors",
    "check_parity": "retune._export",
    "to_onnx": "retune._export",
    "load_history": "retune._history",
    "plan_warm_start": "retune._history",
    "MIN_IMPORTANCE_TRIALS": "retune._optuna",
    "StudyImportances": "retune._optuna",
    "StudyPins": "retune._optuna",
    "StudyProgress": "retune._optuna",
    "archive_study": "retune._optuna",
    "begin_study": "retune._optuna",
    "study_importances": "retune._optuna",
    "study_names": "retune._optuna",
    "study_pins": "retune._optuna",
    "study_progress": "retune._optuna",
    "ExportedModel": "retune._refit",
    "refit_and_export": "retune._refit",
    "check_classes": "retune._refit",
    "TuningResult": "retune._study",
    "run_study": "retune._study",
}

__all__ = [
    "MIN_IMPORTANCE_TRIALS",
    "Budget",
    "BudgetError",
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
    "StudyStorageUnavailableError",
    "StudyImportances",
    "StudyPins",
    "StudyProgress",
    "TuningResult",
    "WarmStartError",
    "archive_study",
    "begin_study",
    "check_classes",
    "check_parity",
    "load_history",
    "plan_warm_start",
    "refit_and_export",
    "run_study",
    "study_importances",
    "study_names",
    "study_pins",
    "study_progress",
    "to_onnx",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
