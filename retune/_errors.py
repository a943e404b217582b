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
