"""Making a better model. For now: ONNX export of fitted estimators with a parity gate."""

from __future__ import annotations

from retune._errors import ExportError, ParityError, RetuneError
from retune._export import check_parity, to_onnx

__all__ = ["ExportError", "ParityError", "RetuneError", "check_parity", "to_onnx"]
