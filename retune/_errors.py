"""The exception hierarchy of :mod:`retune`: one root."""

from __future__ import annotations


class RetuneError(Exception):
    """Root of every error raised by :mod:`retune`."""


class ExportError(RetuneError):
    """An estimator could not be converted to a servable ONNX model."""


class ParityError(ExportError):
    """The exported ONNX model disagrees with the estimator beyond ``tolerance``."""

    def __init__(self, message: str, *, max_abs_diff: float, tolerance: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance


class SearchSpaceError(RetuneError, ValueError):
    """A search space (or a parameter set checked against one) is invalid.

    ``path`` is the dotted key path of the offending entry (``"params.estimator.when"``).
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class CVError(RetuneError, ValueError):
    """A cross-validation scheme cannot split the data it was given."""


class BudgetError(RetuneError, ValueError):
    """A :class:`~retune.Budget` was built with an invalid argument."""


class WarmStartError(RetuneError, ValueError):
    """A warm-start plan cannot be built, read or applied."""


class StudyError(RetuneError):
    """The Optuna study behind a tuning job failed (storage, sampling, bookkeeping).

    ``study_name`` names the study the operator has to look at.
    """

    def __init__(self, message: str, *, study_name: str) -> None:
        super().__init__(f"study {study_name!r}: {message}")
        self.study_name = study_name


class StudyStorageUnavailableError(StudyError):
    """The study's storage could not be reached, or dropped the connection (its database
    restarting, failing over, out of reach): the storage's condition, not the study's.
    The study can be resumed once the storage answers again; a trial this run was
    running is lost (failed as stale, and retried, by the next run's check)."""
