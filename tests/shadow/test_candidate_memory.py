"""A candidate whose allocation onnxruntime refuses under the probe's address-space limit
is refused for memory (``load_memory``), whichever of its arenas reports it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from shadow import CandidateRejectedError, inspect_candidate

LIMIT = 1 << 30  # the probe's address space; the model asks for a 4 GiB buffer


def allocating_model(*, when: str) -> bytes:
    """A model needing a 4 GiB float buffer: a constant folded when its session is created
    (``"load"``), or a tensor sized by the input, allocated when it runs (``"run"``)."""
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8])]
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    inits = [
        numpy_helper.from_array(np.array([1 << 30], np.int64), "big"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    if when == "load":
        nodes = [helper.make_node("ConstantOfShape", ["big"], ["c"])]
    else:
        inits += [
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ]
        nodes = [
            helper.make_node("Shape", ["input"], ["s"]),
            helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
            helper.make_node("Mul", ["n", "big"], ["m"]),
            helper.make_node("ConstantOfShape", ["m"], ["c"]),
        ]
    nodes += [
        helper.make_node("ReduceSum", ["c"], ["r"], keepdims=1),
        helper.make_node("ReduceSum", ["input", "axis"], ["t"], keepdims=1),
        helper.make_node("Add", ["t", "r"], ["probabilities"]),
    ]
    graph = helper.make_graph(nodes, "allocating", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("when", ["load", "run"])
def test_an_arena_allocation_refused_under_the_limit_is_load_memory(
    tmp_path: Path, when: str
) -> None:
    """onnxruntime's arena reports "Failed to allocate memory for requested buffer": it was
    a ``load_failed``, so the operator was not told that the memory limit refused it."""
    path = tmp_path / "big.onnx"
    path.write_bytes(allocating_model(when=when))
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(path, memory_limit_bytes=LIMIT, timeout_s=60)
    assert info.value.code == "load_memory"
    assert f"address-space limit {LIMIT} bytes" in info.value.message


def value_allocating_model(batch: int | None = None) -> bytes:
    """``[N, 8] -> [N, 1]`` allocating ``sum(|x|) * 1e8`` floats when it runs: nothing
    for rows of zeros, 3.2 GB for one row of ones, 3.6 GB for an ordinary row."""
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 8])]
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 1])
    inits = [
        numpy_helper.from_array(np.array(1e8, np.float32), "scale"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Abs", ["input"], ["abs"]),
        helper.make_node("ReduceSum", ["abs"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "scale"], ["sb"]),
        helper.make_node("Cast", ["sb"], ["n"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["n", "axis0"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["c"]),
        helper.make_node("ReduceSum", ["c"], ["r"], keepdims=1),
        helper.make_node("ReduceSum", ["input", "axis1"], ["t"], keepdims=1),
        helper.make_node("Add", ["t", "r"], ["probabilities"]),
    ]
    graph = helper.make_graph(nodes, "value_allocating", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("batch", [None, 1, 2], ids=["dynamic", "fixed-1", "fixed-2"])
def test_a_model_allocating_by_its_input_values_is_refused_for_memory(
    tmp_path: Path, batch: int | None
) -> None:
    """The probe scored rows of zeros only: a model allocating by the values of its
    input passed it and then took 3.6 GB of the daemon on its first real row. It scores
    non-zero rows too, under the same address-space limit, in batches of the size the
    model declares (three rows at once were refused by a model fixed at two, unnoticed)."""
    path = tmp_path / "by_value.onnx"
    path.write_bytes(value_allocating_model(batch))
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(path, memory_limit_bytes=LIMIT, timeout_s=60)
    assert info.value.code == "load_memory"
    assert f"address-space limit {LIMIT} bytes" in info.value.message


def test_a_model_looping_on_non_zero_rows_passes_inspection_for_the_serving_deadline(
    tmp_path: Path,
) -> None:
    """The probe's non-zero rows run under a deadline of their own: a graph whose loop
    runs as long as its input says is left to the serving deadline (``run_timeout_s``)
    and its breaker, as before, not refused at registration."""
    from shadow_models import looping_model

    path = tmp_path / "loops.onnx"
    path.write_bytes(looping_model())
    info = inspect_candidate(path, memory_limit_bytes=2 * 1024**3, timeout_s=60)
    assert info.signature.n_features == 6
