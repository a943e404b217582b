from __future__ import annotations

import hashlib
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from shadow_models import N_FEATURES, Exported

import shadow._candidate as candidate_module
from shadow import CandidateRejectedError, inspect_candidate


def matmul_model() -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.ones((3, 2), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def rejection(
    path: Path, *, memory_limit_bytes: int = 2 * 1024**3, timeout_s: float = 60.0
) -> CandidateRejectedError:
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(path, memory_limit_bytes=memory_limit_bytes, timeout_s=timeout_s)
    return info.value


@pytest.fixture
def good_path(tmp_path: Path, boosting: Exported) -> Path:
    path = tmp_path / "good.onnx"
    path.write_bytes(boosting.onnx_bytes)
    return path


def test_accepts_exported_model_and_reports_signature_and_memory(
    good_path: Path, boosting: Exported
) -> None:
    info = inspect_candidate(good_path)
    assert info.signature == boosting.model.signature
    assert info.signature.n_features == N_FEATURES
    assert info.load_memory_bytes > 0
    assert info.size_bytes == len(boosting.onnx_bytes)
    assert info.sha256 == hashlib.sha256(boosting.onnx_bytes).hexdigest()
    assert info.opset["ai.onnx"] >= 1
    assert "ai.onnx.ml" in info.opset


def test_refuses_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"\x00\xffthis is a text file, not a protobuf\n" * 10)
    assert rejection(path).code == "not_onnx"


def test_refuses_model_with_external_data(tmp_path: Path) -> None:
    path = tmp_path / "external.onnx"
    onnx.save_model(matmul_model(), path, save_as_external_data=True, size_threshold=0)
    error = rejection(path)
    assert error.code == "external_data"
    assert "W" in error.message


def test_refuses_model_with_two_inputs(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["Y"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, [None, 3]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
    )
    path = tmp_path / "two.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    error = rejection(path)
    assert error.code == "unsupported_signature"


@pytest.mark.parametrize(
    ("case", "node", "out_shape"),
    [
        ("scalar", helper.make_node("ReduceSum", ["X"], ["Y"], keepdims=0), []),
        ("transposed", helper.make_node("Transpose", ["X"], ["Y"]), [3, None]),
    ],
    ids=["scalar", "transposed"],
)
def test_refuses_a_primary_output_without_one_row_per_input_row(
    tmp_path: Path, case: str, node: onnx.NodeProto, out_shape: list[int | None]
) -> None:
    """Such an output cannot be split by request: scored, every backlog of a challenger
    went one request at a time and every answer of a champion had no row to record."""
    graph = helper.make_graph(
        [node],
        case,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)],
    )
    path = tmp_path / f"{case}.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    error = rejection(path)
    assert error.code == "unsupported_signature"
    assert "one row per input row" in error.message and "'Y'" in error.message


def test_model_onnxruntime_cannot_load_is_load_failed(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["X"], ["Y"])],
        "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
    )
    path = tmp_path / "broken.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    error = rejection(path)
    assert error.code == "load_failed"
    assert "NoSuchOperator" in error.message


def test_probe_exceeding_timeout_is_load_timeout(good_path: Path) -> None:
    assert rejection(good_path, timeout_s=0.05).code == "load_timeout"


def test_probe_exceeding_memory_limit_is_load_memory(good_path: Path) -> None:
    error = rejection(good_path, memory_limit_bytes=64 * 1024**2)
    assert error.code == "load_memory"


def test_identical_bytes_under_identical_limits_are_probed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass is kept by content and limits: the same bytes (at any path) pass again
    without a child process; other limits, other bytes and refusals are probed."""
    probes: list[str] = []
    run = subprocess.run

    def counted(command: Any, *args: Any, **kwargs: Any) -> Any:
        probes.append(command[-1])
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    proto = matmul_model()
    proto.doc_string = uuid.uuid4().hex  # bytes no other test has probed
    first, copy = tmp_path / "first.onnx", tmp_path / "copy.onnx"
    onnx.save_model(proto, first)
    copy.write_bytes(first.read_bytes())

    info = inspect_candidate(first)
    assert inspect_candidate(copy) == info
    assert len(probes) == 1
    info.opset["changed.by.a.caller"] = 1  # what one caller does with its answer
    assert "changed.by.a.caller" not in inspect_candidate(copy).opset
    inspect_candidate(first, timeout_s=30.0)  # other limits: probed
    assert len(probes) == 2
    for _ in range(2):  # a refusal is not kept: it may be the machine's (a slow start)
        assert rejection(first, timeout_s=0.001).code == "load_timeout"
    assert len(probes) == 4
    proto.doc_string = uuid.uuid4().hex
    onnx.save_model(proto, first)  # the file changed under the same path: probed
    assert inspect_candidate(first).sha256 != info.sha256
    assert len(probes) == 5


def test_the_probe_loads_the_bytes_that_were_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent hashed one read of the file and the probe read it again: a file
    swapped in between passed for bytes no probe loaded (and the pass was remembered
    under their hash)."""
    broken = helper.make_model(
        helper.make_graph(
            [helper.make_node("NoSuchOperator", ["X"], ["Y"])],
            "broken",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    broken.doc_string = uuid.uuid4().hex
    path = tmp_path / "swapped.onnx"
    onnx.save_model(broken, path)
    run = subprocess.run

    def swap_then_run(command: Any, *args: Any, **kwargs: Any) -> Any:
        onnx.save_model(matmul_model(), path)  # a writer swaps the file meanwhile
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", swap_then_run)
    assert rejection(path).code == "load_failed"


def test_what_is_recorded_of_a_candidate_comes_from_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opset and the external-data check came from one read of the file, the hash
    and the probe from a second: a file swapped between them was recorded (and its pass
    remembered) with another file's opset. The probe now reads all of them from the bytes
    hashed (its stdin)."""
    first, second = matmul_model(), matmul_model()
    first.doc_string, second.doc_string = uuid.uuid4().hex, uuid.uuid4().hex
    second.opset_import[0].version = 13
    path = tmp_path / "swapped.onnx"
    onnx.save_model(first, path)
    limit = candidate_module._probe_limit

    def swap_after_reading(asked: int) -> int:
        onnx.save_model(second, path)  # a writer replaces the file meanwhile
        return limit(asked)

    # called once the file was read, before the probe: what it probes is what was read
    monkeypatch.setattr(candidate_module, "_probe_limit", swap_after_reading)
    info = inspect_candidate(path)
    assert info.sha256 == hashlib.sha256(first.SerializeToString()).hexdigest()
    assert info.opset["ai.onnx"] == 17
