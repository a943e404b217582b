"""A fact docs/retune-notes.md states, checked here: LightGBM converts to ONNX through
onnxmltools' converter registered with skl2onnx, standalone and inside a Pipeline, with
parity (scikit-learn's HistGradientBoosting does not: see test_retune_exports.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from lightgbm import LGBMClassifier
from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


@pytest.mark.parametrize("inside_pipeline", [False, True])
def test_lightgbm_converts_with_parity(inside_pipeline: bool) -> None:
    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(np.int64)
    lgbm = LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1, random_state=0)
    model = (
        Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("lgbm", lgbm)])
        if inside_pipeline
        else lgbm
    )
    model.fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 6]))],
        options={id(lgbm): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"input": x[:500]})[1]
    assert np.abs(probabilities - model.predict_proba(x[:500])).max() < 1e-5
