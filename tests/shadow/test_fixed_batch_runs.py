"""Many rows through a model whose graph fixes its batch dimension: what
``torch.onnx.export`` gives without ``dynamic_axes``, or skl2onnx with
``FloatTensorType([1, F])``. Served one request of that many rows at a time, such a
model refused the daemon's own runs of many rows (registration's checks, the reference's
scores) with ``shape_mismatch``."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from shadow import InvalidInputError, OnnxModel, ShadowError, run_rows

N_IN = 3
WEIGHTS = np.random.default_rng(0).normal(size=(N_IN, 2)).astype(np.float32)


def _model(batch: int | None, *, summed: bool = False) -> OnnxModel:
    """Softmax ``probabilities`` ``[batch, 2]`` and their argmax ``label`` ``[batch]``;
    ``summed`` adds a ``total`` output ``[1]`` (the batch's sum), not one row per row."""
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 2]),
        helper.make_tensor_value_info("label", TensorProto.INT64, [batch]),
    ]
    if summed:
        nodes.append(helper.make_node("ReduceSum", ["z"], ["total"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes,
        "fixed_batch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, N_IN])],
        outputs,
        [numpy_helper.from_array(WEIGHTS, "W")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return OnnxModel.from_bytes(proto.SerializeToString())


def _rows(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, N_IN)).astype(np.float32)


def _row_by_row(x: np.ndarray) -> dict[str, np.ndarray]:
    """Each row scored alone by the same weights under a dynamic batch."""
    dynamic = _model(None)
    runs = [dynamic.run(x[i : i + 1]) for i in range(x.shape[0])]
    return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}


@pytest.mark.parametrize(
    ("batch", "rows"),
    [(None, 10), (1, 10), (4, 10), (4, 8), (4, 3)],
    ids=["dynamic", "fixed-1", "fixed-4-padded", "fixed-4-whole", "fixed-4-short"],
)
def test_run_rows_answers_each_row_as_a_run_of_that_row_alone(batch: int | None, rows: int) -> None:
    model = _model(batch)
    x = _rows(rows)

    got = run_rows(model, x)

    expected = _row_by_row(x)
    assert set(got) == {"probabilities", "label"}
    assert got["probabilities"].shape == (rows, 2)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(got["label"], expected["label"])


@pytest.mark.parametrize("batch", [1, 4])
def test_a_fixed_batch_refuses_a_single_run_of_another_row_count(batch: int) -> None:
    # what run_rows is for: onnxruntime holds the declared batch
    with pytest.raises(InvalidInputError) as info:
        _model(batch).run(_rows(10))
    assert info.value.code == "shape_mismatch"


@pytest.mark.parametrize("batch", [None, 1, 4])
def test_run_rows_of_no_rows_answers_empty_outputs_of_the_right_columns(
    batch: int | None,
) -> None:
    got = run_rows(_model(batch), _rows(0))

    assert got["probabilities"].shape == (0, 2)
    assert got["label"].shape == (0,)


def test_an_output_not_holding_a_row_per_row_cannot_be_split_into_chunks() -> None:
    with pytest.raises(ShadowError) as info:
        run_rows(_model(4, summed=True), _rows(10))

    assert info.value.code == "output_shape_mismatch"
    assert "'total'" in info.value.message
    assert "4 rows" in info.value.message


def test_a_dynamic_batch_is_one_run_whatever_its_outputs() -> None:
    got = run_rows(_model(None, summed=True), _rows(10))

    assert got["total"].shape == ()
    assert got["probabilities"].shape == (10, 2)
