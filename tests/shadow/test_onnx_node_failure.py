"""A node failing inside the graph is the model's fault, not the client's.

onnxruntime reports a Gather index past its table as INVALID_ARGUMENT ("Non-zero status
code returned while running Gather node"), the status it gives an input of the wrong
dtype or rank too; every one was answered 400 ``shape_mismatch``, "onnxruntime refused
the input", to a request that had passed :func:`~shadow.validate_batch`. Such a failure
is now :class:`~shadow.ShadowError` ``run_failed`` (422), while an input onnxruntime
itself refuses is still :class:`~shadow.InvalidInputError`."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from shadow import InvalidInputError, OnnxModel, ShadowError, validate_batch

N_FEATURES = 4
TABLE = 2  # entries of the gathered table: |x0| >= 2 indexes past it


def gather_model() -> bytes:
    """``[N, 4] -> probabilities [N, 1]``: ``table[int(|x0|)]`` from a table of ones of
    two entries, so a row with ``|x0| >= 2`` makes the Gather node fail."""
    nodes = [
        h.make_node("Slice", ["input", "start", "end", "axis"], ["x0"]),
        h.make_node("Abs", ["x0"], ["ax0"]),
        h.make_node("Cast", ["ax0"], ["idx"], to=T.INT64),
        h.make_node("Gather", ["table", "idx"], ["probabilities"], axis=0),
    ]
    graph = h.make_graph(
        nodes,
        "gather",
        [h.make_tensor_value_info("input", T.FLOAT, [None, N_FEATURES])],
        [h.make_tensor_value_info("probabilities", T.FLOAT, [None, 1])],
        initializer=[
            h.make_tensor("table", T.FLOAT, [TABLE], [1.0] * TABLE),
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.from_bytes(gather_model())


def test_a_valid_row_whose_gather_node_fails_is_a_model_fault(model: OnnxModel) -> None:
    row = np.array([[3.0, 0.0, 0.0, 0.0]], np.float32)
    x = validate_batch(row, model.signature, max_rows=10)  # the input is valid
    in_table = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    assert model.run(in_table)["probabilities"].tolist() == [[1.0]]
    with pytest.raises(ShadowError) as caught:
        model.run(x)
    assert not isinstance(caught.value, InvalidInputError | ValueError)
    assert caught.value.code == "run_failed"
    assert "Gather" in caught.value.message
    assert "refused the input" not in caught.value.message


@pytest.mark.parametrize(
    ("x", "code"),
    [
        pytest.param(np.zeros((1, N_FEATURES), np.float64), "dtype_mismatch", id="float64_rows"),
        pytest.param(np.zeros((1, N_FEATURES, 1), np.float32), "shape_mismatch", id="rank_3"),
        pytest.param(np.zeros((1, N_FEATURES + 1), np.float32), "shape_mismatch", id="width_5"),
    ],
)
def test_an_input_onnxruntime_refuses_is_still_the_client_s_error(
    model: OnnxModel, x: np.ndarray, code: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        model.run(x)
    assert caught.value.code == code
    assert caught.value.message.startswith("onnxruntime refused the input")
