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


def counting_loop_body(step: float) -> Any:
    """A ``Loop`` body that carries one float, adds ``step`` to it each trip and never
    stops early: the loop runs as many trips as it is given."""
    from onnx import TensorProto as T
    from onnx import helper as h

    return h.make_graph(
        [h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Add", ["a", "step"], ["a_out"])],
        "body",
        [
            h.make_tensor_value_info("i", T.INT64, []),
            h.make_tensor_value_info("c", T.BOOL, []),
            h.make_tensor_value_info("a", T.FLOAT, []),
        ],
        [
            h.make_tensor_value_info("c_out", T.BOOL, []),
            h.make_tensor_value_info("a_out", T.FLOAT, []),
        ],
        initializer=[h.make_tensor("step", T.FLOAT, [], [step])],
    )


def looping_model(n_features: int = N_FEATURES) -> bytes:
    """A binary classifier ``[N, n_features] -> probabilities [N, 2]`` whose ``Loop``
    runs 1e12 times the sum of its input's absolute values: a row of zeros answers at
    once (a probe's row), any other row practically never."""
    from onnx import TensorProto as T
    from onnx import helper as h

    body = counting_loop_body(0.0)
    nodes = [
        h.make_node("Abs", ["input"], ["abs"]),
        h.make_node("ReduceSum", ["abs"], ["s"], keepdims=0),
        h.make_node("Mul", ["s", "big"], ["sb"]),
        h.make_node("Cast", ["sb"], ["trip"], to=T.INT64),
        h.make_node("Loop", ["trip", "true", "zero_f"], ["acc"], body=body),
        h.make_node("Slice", ["input", "start", "end", "axis"], ["col"]),
        h.make_node("Sigmoid", ["col"], ["p1"]),
        h.make_node("Sub", ["one", "p1"], ["p0"]),
        h.make_node("Concat", ["p0", "p1"], ["pc"], axis=1),
        h.make_node("Add", ["pc", "acc"], ["probabilities"]),
    ]
    graph = h.make_graph(
        nodes,
        "looping",
        [h.make_tensor_value_info("input", T.FLOAT, [None, n_features])],
        [h.make_tensor_value_info("probabilities", T.FLOAT, [None, 2])],
        initializer=[
            h.make_tensor("big", T.FLOAT, [], [1e12]),
            h.make_tensor("true", T.BOOL, [], [True]),
            h.make_tensor("zero_f", T.FLOAT, [], [0.0]),
            h.make_tensor("one", T.FLOAT, [], [1.0]),
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


#: The value of a row's first feature that makes :func:`allocating_model` ask for more
#: memory than any host has.
ALLOCATING_X0 = 7.0


def allocating_model(n_features: int = N_FEATURES, *, at: float = ALLOCATING_X0) -> bytes:
    """A binary classifier ``[N, n_features] -> label [N], probabilities [N, 2]`` (a
    sigmoid of its first feature) that widens its first column to ``[N, 2**48]`` floats
    (``1 + 2**48`` in float32), a petabyte a row, when any row's first feature is ``at``
    (:data:`ALLOCATING_X0` by default; to one column otherwise): onnxruntime cannot allocate that
    under any overcommit setting (it is past the 47-bit address space), as a batch too
    large for the host's memory. The widened column adds nothing: its maximum times
    zero."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [
        h.make_node("Slice", ["input", "start", "end", "axis"], ["x0"]),
        h.make_node("Equal", ["x0", "at"], ["hit"]),
        h.make_node("Cast", ["hit"], ["hit_f"], to=T.FLOAT),
        h.make_node("ReduceMax", ["hit_f"], ["any_hit"], keepdims=0),
        h.make_node("Mul", ["any_hit", "huge"], ["extra"]),
        h.make_node("Add", ["extra", "one"], ["width_f"]),
        h.make_node("Cast", ["width_f"], ["width"], to=T.INT64),
        h.make_node("Unsqueeze", ["width", "axis0"], ["width_1"]),
        h.make_node("Concat", ["one_i", "width_1"], ["shape"], axis=0),
        h.make_node("Expand", ["x0", "shape"], ["wide"]),
        h.make_node("ReduceMax", ["wide"], ["wide_max"], axes=[1], keepdims=1),
        h.make_node("Mul", ["wide_max", "zero"], ["nothing"]),
        h.make_node("Add", ["x0", "nothing"], ["logit"]),
        h.make_node("Sigmoid", ["logit"], ["p1"]),
        h.make_node("Sub", ["one", "p1"], ["p0"]),
        h.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        h.make_node("Greater", ["p1", "half"], ["gt"]),
        h.make_node("Cast", ["gt"], ["label_2d"], to=T.INT64),
        h.make_node("Squeeze", ["label_2d", "axis"], ["label"]),
    ]
    graph = h.make_graph(
        nodes,
        "allocating",
        [h.make_tensor_value_info("input", T.FLOAT, [None, n_features])],
        [
            h.make_tensor_value_info("label", T.INT64, [None]),
            h.make_tensor_value_info("probabilities", T.FLOAT, [None, 2]),
        ],
        initializer=[
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
            h.make_tensor("axis0", T.INT64, [1], [0]),
            h.make_tensor("one_i", T.INT64, [1], [1]),
            h.make_tensor("at", T.FLOAT, [], [at]),
            h.make_tensor("huge", T.FLOAT, [], [float(2**48)]),
            h.make_tensor("one", T.FLOAT, [], [1.0]),
            h.make_tensor("zero", T.FLOAT, [], [0.0]),
            h.make_tensor("half", T.FLOAT, [], [0.5]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())
