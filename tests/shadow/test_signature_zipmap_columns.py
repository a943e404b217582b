"""A classifier converted with skl2onnx's ``zipmap: 'columns'`` (one rank-1 float output per
class) loads, as does any graph of several rank-1 float outputs (a regressor's ``pred`` and
``std``): it is refused where it registers as a classifier (:mod:`tunewatch._registry`), not
at every load. The single-output layouts it resembles load as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from onnx import TensorProto, helper, numpy_helper
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression, LogisticRegression

from shadow import OnnxModel, inspect_candidate

N_IN = 4
_TYPES = [("input", FloatTensorType([None, N_IN]))]


def _data(classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(300, N_IN)).astype(np.float32)
    cuts = np.linspace(-1.0, 1.0, classes - 1) if classes > 2 else np.array([0.0])
    return x, np.digitize(x[:, 0] + 0.5 * x[:, 1], cuts)


def _zipmap_columns(classes: int, *, keep_label: bool) -> onnx.ModelProto:
    """``output_label`` ``[N]`` int64 and ``i0`` … ``i{classes-1}`` ``[N]`` float; without
    its label when ``keep_label`` is false (one float output per class and nothing else)."""
    x, y = _data(classes)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    model: onnx.ModelProto = convert_sklearn(
        estimator,
        initial_types=_TYPES,
        options={id(estimator): {"zipmap": "columns"}},
        target_opset=17,
    )
    if not keep_label:
        kept = [o for o in model.graph.output if o.name != "output_label"]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    return model


@pytest.mark.parametrize(
    ("classes", "keep_label"),
    [(2, True), (2, False), (4, True)],
    ids=["binary-with-label", "binary-without-label", "four-classes-with-label"],
)
def test_a_zipmap_columns_classifier_loads_its_first_column_primary(
    classes: int, keep_label: bool
) -> None:
    """Loading knows no task: a classifier of this layout is refused where it registers
    as one (``tests/tunewatch/test_registry_zipmap_columns.py``), and refusing it at every
    load stopped serving any champion of several rank-1 float outputs."""
    model = OnnxModel.from_bytes(
        _zipmap_columns(classes, keep_label=keep_label).SerializeToString()
    )
    assert model.signature.primary_output == "i0"
    floats = [o.name for o in model.signature.outputs if o.dtype.kind == "f"]
    assert floats == [f"i{k}" for k in range(classes)]


def test_a_zipmap_columns_candidate_is_inspected(tmp_path: Path) -> None:
    path = tmp_path / "candidate.onnx"
    onnx.save_model(_zipmap_columns(2, keep_label=True), path)
    assert inspect_candidate(path).signature.primary_output == "i0"


def _regressor_with_std() -> onnx.ModelProto:
    """A regressor answering ``pred`` ``[N]`` and its ``std`` ``[N]``."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Reshape", ["z", "flat"], ["pred"]),
            helper.make_node("Abs", ["pred"], ["std"]),
        ],
        "regressor_with_std",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_IN])],
        [
            helper.make_tensor_value_info("pred", TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("std", TensorProto.FLOAT, [None]),
        ],
        [
            numpy_helper.from_array(np.ones((N_IN, 1), np.float32), "W"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_regressor_with_pred_and_std_loads_and_serves_pred() -> None:
    """Refused ``unsupported_signature`` at every load, its champion stopped serving."""
    model = OnnxModel.from_bytes(_regressor_with_std().SerializeToString())
    assert model.signature.primary_output == "pred"
    assert model.signature.primary_width == 1
    outputs = model.run(np.ones((2, N_IN), np.float32))
    np.testing.assert_array_equal(model.primary(outputs), [[4.0], [4.0]])
    np.testing.assert_array_equal(outputs["std"], [4.0, 4.0])


def _regressor_n1() -> onnx.ModelProto:
    x, _ = _data(2)
    estimator = LinearRegression().fit(x, x @ np.arange(1.0, N_IN + 1.0))
    model: onnx.ModelProto = convert_sklearn(estimator, initial_types=_TYPES, target_opset=17)
    return model


def _regressor_n() -> onnx.ModelProto:
    """The ``[N, 1]`` regressor reshaped to ``[N]``."""
    model = _regressor_n1()
    graph = model.graph
    graph.node.append(helper.make_node("Reshape", [graph.output[0].name, "flat"], ["pred"]))
    graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("pred", TensorProto.FLOAT, [None]))
    return model


def _binary_probabilities() -> onnx.ModelProto:
    x, y = _data(2)
    estimator = LogisticRegression().fit(x, y)
    model: onnx.ModelProto = convert_sklearn(
        estimator, initial_types=_TYPES, options={id(estimator): {"zipmap": False}}, target_opset=17
    )
    return model


def _matmul_sigmoid() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["probability"]),
        ],
        "sigmoid",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_IN])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.ones((N_IN, 1), np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _lightgbm_classifier() -> onnx.ModelProto:
    x, y = _data(2)
    estimator = LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1).fit(x, y)
    model: onnx.ModelProto = convert_lightgbm(
        estimator,
        initial_types=[("input", MLFloatTensorType([None, N_IN]))],
        zipmap=False,
        target_opset=15,  # onnxmltools' highest
    )
    return model


def _lightgbm_regressor() -> onnx.ModelProto:
    x, _ = _data(2)
    estimator = LGBMRegressor(n_estimators=5, num_leaves=7, verbose=-1).fit(x, x[:, 0])
    model: onnx.ModelProto = convert_lightgbm(
        estimator, initial_types=[("input", MLFloatTensorType([None, N_IN]))], target_opset=15
    )
    return model


@pytest.mark.parametrize(
    ("build", "primary", "width"),
    [
        (_regressor_n, "pred", 1),
        (_regressor_n1, "variable", 1),
        (_binary_probabilities, "probabilities", 2),
        (_matmul_sigmoid, "probability", 1),
        (_lightgbm_classifier, "probabilities", 2),
        (_lightgbm_regressor, "variable", 1),
    ],
    ids=[
        "regressor-n",
        "regressor-n-by-1",
        "binary-probabilities-and-label",
        "matmul-sigmoid-n-by-1",
        "lightgbm-classifier",
        "lightgbm-regressor",
    ],
)
def test_a_single_float_output_still_loads(
    build: Callable[[], onnx.ModelProto], primary: str, width: int
) -> None:
    signature = OnnxModel.from_bytes(build().SerializeToString()).signature
    assert signature.primary_output == primary
    assert signature.primary_width == width
