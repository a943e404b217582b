"""A shadow run whose output besides the primary one holds a NaN failed: the inference
route refuses it in the champion's answer (422 ``non_finite_output``), and counted as a
success in shadow, a challenger failing on 10% of rows passed ``max_error_rate``."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

from shadow import LoadedVersion, OnnxModel
from shadow._jobs import ShadowJob, score, score_many


def two_output_model() -> bytes:
    """``probabilities`` [N, 2] (primary, always finite) and ``margin`` [N, 1], NaN for
    rows with x0 > 2 (``logit + sqrt(2 - x0) * 0``)."""
    nodes = [
        h.make_node("MatMul", ["input", "w"], ["logit"]),
        h.make_node("Sigmoid", ["logit"], ["p1"]),
        h.make_node("Sub", ["one", "p1"], ["p0"]),
        h.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        h.make_node("Slice", ["input", "start", "end", "axis"], ["x0"]),
        h.make_node("Sub", ["two", "x0"], ["d"]),
        h.make_node("Sqrt", ["d"], ["s"]),
        h.make_node("Mul", ["s", "zero"], ["z"]),
        h.make_node("Add", ["logit", "z"], ["margin"]),
    ]
    graph = h.make_graph(
        nodes,
        "two_outputs",
        [h.make_tensor_value_info("input", T.FLOAT, [None, 8])],
        [
            h.make_tensor_value_info("probabilities", T.FLOAT, [None, 2]),
            h.make_tensor_value_info("margin", T.FLOAT, [None, 1]),
        ],
        initializer=[
            h.make_tensor("w", T.FLOAT, [8, 1], [1.5, -1.0, 0, 0, 0, 0, 0, 0]),
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
            h.make_tensor("two", T.FLOAT, [], [2.0]),
            h.make_tensor("zero", T.FLOAT, [], [0.0]),
            h.make_tensor("one", T.FLOAT, [], [1.0]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _jobs(loaded: LoadedVersion) -> list[ShadowJob]:
    x = np.zeros((10, 8), np.float32)
    x[3, 0] = 3.0  # the margin of this row is NaN
    return [ShadowJob("m", f"r{i}", x[i : i + 1], (loaded,)) for i in range(10)]


def test_a_non_finite_secondary_output_fails_the_run_alone_or_batched() -> None:
    loaded = LoadedVersion(
        version=2,
        model=OnnxModel.from_bytes(two_output_model()),
        hyperparameter_set="hp",
    )
    jobs = _jobs(loaded)
    alone = [score(j, loaded) for j in jobs]
    batched = score_many(jobs, loaded)  # the batch fails: each job scored alone
    for results in (alone, batched):
        assert [r.code for r in results] == [
            "non_finite_output" if i == 3 else None for i in range(10)
        ]
        assert "margin" in (results[3].error or "")
        assert all(r.values is not None for i, r in enumerate(results) if i != 3)
