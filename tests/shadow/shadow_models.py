"""Data and model builders shared by the shadow tests (a uniquely named module so
test files can import it; fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retune import to_onnx
from shadow import OnnxModel

N_FEATURES = 6


@dataclass(frozen=True)
class Exported:
    estimator: Any
    onnx_bytes: bytes
    model: OnnxModel


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_class: np.ndarray
    y_reg: np.ndarray
    x_holdout: np.ndarray


def make_data(seed: int) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, N_FEATURES))
    logits = 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3]
    y_class = (logits + rng.normal(scale=0.5, size=600) > 0).astype(np.int64)
    y_reg = x @ np.arange(1, N_FEATURES + 1, dtype=np.float64) + rng.normal(size=600)
    return Data(x[:400], y_class[:400], y_reg[:400], x[400:])


def export(estimator: Any) -> Exported:
    onnx_bytes = to_onnx(estimator, N_FEATURES)
    return Exported(estimator, onnx_bytes, OnnxModel.from_bytes(onnx_bytes))
