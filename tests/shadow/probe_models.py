"""Candidate models whose primary output the probe refuses or reports on: of rank three,
class-major, of a width computed at run time, logits, a string-class label (a uniquely
named module so test files of both packages can import it)."""

from __future__ import annotations

import uuid

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

N_IN = 4


def _model(
    nodes: list[onnx.NodeProto], out_shape: list[int | None] | None, **weights: np.ndarray
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "probe_case",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_IN])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.doc_string = uuid.uuid4().hex  # bytes no other test has probed (passes are kept)
    return model


def _weights(columns: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_IN, columns)).astype(np.float32)


def rank_three() -> onnx.ModelProto:
    """Sigmoids shaped ``[N, 2, 2]``."""
    return _model(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["s"]),
            helper.make_node("Reshape", ["s", "shape"], ["probabilities"]),
        ],
        [None, 2, 2],
        W=_weights(4),
        shape=np.array([-1, 2, 2], dtype=np.int64),
    )


def class_major(classes: int) -> onnx.ModelProto:
    """Softmax probabilities transposed to ``[classes, N]`` (``[n_outputs, batch]``)."""
    return _model(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["p"], axis=1),
            helper.make_node("Transpose", ["p"], ["probabilities"], perm=[1, 0]),
        ],
        [classes, None],
        W=_weights(classes),
    )


def dynamic_width(classes: int) -> onnx.ModelProto:
    """A softmax over ``classes`` whose width the graph computes at run time: onnxruntime
    reports the output's shape as unknown."""
    return _model(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["sm"], axis=1),
            helper.make_node("ReduceSum", ["input"], ["s"], keepdims=0),
            helper.make_node("Mul", ["s", "zero"], ["s0"]),
            helper.make_node("Add", ["s0", "width"], ["wf"]),
            helper.make_node("Cast", ["wf"], ["wi"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["wi", "one"], ["w1"]),
            helper.make_node("Concat", ["minus_one", "w1"], ["shape"], axis=0),
            helper.make_node("Reshape", ["sm", "shape"], ["probabilities"]),
        ],
        None,
        W=_weights(classes),
        zero=np.array(0.0, dtype=np.float32),
        width=np.array(float(classes), dtype=np.float32),
        one=np.array([1], dtype=np.int64),
        minus_one=np.array([-1], dtype=np.int64),
    )


def logits(columns: int = 2) -> onnx.ModelProto:
    """A linear layer and no softmax: logits (or a regressor's prediction, of one
    column), 0 on a row of zeros."""
    return _model(
        [helper.make_node("MatMul", ["input", "W"], ["probabilities"])],
        [None, columns],
        W=_weights(columns) * 3,
    )


def softmax() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ],
        [None, 2],
        W=_weights(2),
    )


def string_label() -> onnx.ModelProto:
    """A logistic regression of classes "no" and "yes", converted with ``zipmap=False``:
    its ``label`` is ``tensor(string)``."""
    x = np.random.default_rng(0).normal(size=(200, N_IN))
    estimator = LogisticRegression().fit(x, np.where(x[:, 0] > 0, "yes", "no"))
    proto: onnx.ModelProto = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([None, N_IN]))],
        options={id(estimator): {"zipmap": False}},
    )
    return proto


def constant(row: list[float]) -> onnx.ModelProto:
    """Answers ``row`` for every input row (a linear layer of zero weights and a bias)."""
    return _model(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Add", ["z", "bias"], ["probabilities"]),
        ],
        [None, len(row)],
        W=np.zeros((N_IN, len(row)), dtype=np.float32),
        bias=np.array(row, dtype=np.float32),
    )
