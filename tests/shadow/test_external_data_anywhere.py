"""A tensor whose data is an external file is refused wherever the model holds it, not
only where a hand-kept list of fields looked: a model-local function's default attribute
(``FunctionProto.attribute_proto``) escaped the check, and onnxruntime, inlining the
function, read the file from the daemon's working directory — a regression model then
answered it byte by byte."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from shadow import CandidateRejectedError, OnnxModel, inspect_candidate

SECRET = b"PGPASSWORD=hunter2\n"


def _external(name: str, location: str, n: int) -> TensorProto:
    tensor = TensorProto()
    tensor.name, tensor.data_type = name, TensorProto.UINT8
    tensor.dims.extend([n])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _reads_file_through_a_function_default(location: str, n: int) -> bytes:
    """A regression model answering, for each row, the byte of ``location`` (relative to
    the loader's working directory) at index ``int(x[0])``: the file is a function's
    default attribute, which its ``Constant`` node takes by reference."""
    constant = onnx.NodeProto(op_type="Constant", output=["c"])
    ref = constant.attribute.add()
    ref.name, ref.ref_attr_name, ref.type = "value", "v", onnx.AttributeProto.TENSOR

    def const(name: str, value: int) -> onnx.NodeProto:
        tensor = helper.make_tensor(f"{name}_v", TensorProto.INT64, [1], [value])
        return helper.make_node("Constant", [], [name], value=tensor)

    nodes = [
        constant,
        helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
        const("s0", 0),
        const("s1", 1),
        const("ax", 1),
        helper.make_node("Slice", ["X", "s0", "s1", "ax"], ["x0"]),
        helper.make_node("Cast", ["x0"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["cf", "idx"], ["Y"], axis=0),
    ]
    function = helper.make_function(
        "leak", "Leak", ["X"], ["Y"], nodes, opset_imports=[helper.make_opsetid("", 17)]
    )
    function.attribute_proto.append(helper.make_attribute("v", _external("leak", location, n)))
    graph = helper.make_graph(
        [helper.make_node("Leak", ["input"], ["variable"], domain="leak")],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("leak", 1)],
        functions=[function],
    )
    model.ir_version = 10
    return model.SerializeToString()


@pytest.fixture
def in_a_directory_holding_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, as the daemon's, holding a file the model names."""
    (tmp_path / ".env").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_session_refuses_a_function_default_read_from_an_external_file(
    in_a_directory_holding_a_secret: Path,
) -> None:
    data = _reads_file_through_a_function_default(".env", len(SECRET))
    with pytest.raises(CandidateRejectedError) as refused:
        OnnxModel.from_bytes(data)
    assert refused.value.code == "external_data"
    assert "leak" in refused.value.message
    assert "hunter2" not in refused.value.message


def test_registration_refuses_a_function_default_read_from_an_external_file(
    in_a_directory_holding_a_secret: Path,
) -> None:
    path = in_a_directory_holding_a_secret / "candidate.onnx"
    path.write_bytes(_reads_file_through_a_function_default(".env", len(SECRET)))
    with pytest.raises(CandidateRejectedError) as refused:
        inspect_candidate(path)
    assert refused.value.code == "external_data"


def test_an_external_tensor_in_training_info_is_refused_too() -> None:
    """A field no list named (``ModelProto.training_info``): found by the walk."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["variable"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    training = model.training_info.add()
    training.initialization.name = "init"
    training.initialization.initializer.append(_external("state", ".env", 4))
    with pytest.raises(CandidateRejectedError) as refused:
        OnnxModel.from_bytes(model.SerializeToString())
    assert refused.value.code == "external_data"
