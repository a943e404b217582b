from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from shadow_models import N_FEATURES, Data, Exported

from shadow import CandidateRejectedError, InvalidInputError, ModelLoadError, OnnxModel


def two_input_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["Y"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, [None, 3]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def matmul_model(input_shape: list[int | str | None]) -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.ones((3, 2), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_classifier_signature_reads_input_and_probability_output(logistic: Exported) -> None:
    sig = logistic.model.signature
    assert sig.input.name == "input"
    assert sig.input.dtype == np.float32
    assert sig.input.shape == (None, N_FEATURES)
    assert sig.n_features == N_FEATURES
    assert sig.output_names == ("label", "probabilities")
    assert sig.output("label").dtype == np.int64
    assert sig.output("probabilities").shape == (None, 2)
    assert sig.primary_output == "probabilities"


def test_regressor_signature_uses_variable_as_primary(regression: Exported) -> None:
    sig = regression.model.signature
    assert sig.primary_output == "variable"
    assert sig.output("variable").dtype == np.float32


def test_signature_round_trips_through_dict(boosting: Exported) -> None:
    sig = boosting.model.signature
    assert type(sig).from_dict(sig.to_dict()) == sig


@pytest.mark.parametrize("fixture", ["logistic", "boosting"])
def test_run_matches_sklearn_predict_proba(
    fixture: str, data: Data, request: pytest.FixtureRequest
) -> None:
    exported: Exported = request.getfixturevalue(fixture)
    x32 = data.x_holdout.astype(np.float32)
    outputs = exported.model.run(x32)
    expected = exported.estimator.predict_proba(x32.astype(np.float64))
    np.testing.assert_allclose(exported.model.primary(outputs), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["label"], exported.estimator.predict(x32))


def test_primary_reshapes_regressor_output_to_2d_float32(regression: Exported, data: Data) -> None:
    x32 = data.x_holdout[:5].astype(np.float32)
    values = regression.model.primary(regression.model.run(x32))
    assert values.shape == (5, 1)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values[:, 0], regression.estimator.predict(x32), rtol=1e-4)


def test_model_records_sha256_and_non_negative_memory(logistic: Exported) -> None:
    assert logistic.model.sha256 == hashlib.sha256(logistic.onnx_bytes).hexdigest()
    assert logistic.model.memory_bytes >= 0


def test_run_with_wrong_dtype_raises_dtype_mismatch(logistic: Exported) -> None:
    with pytest.raises(InvalidInputError) as info:
        logistic.model.run(np.zeros((1, N_FEATURES), dtype=np.float64))
    assert info.value.code == "dtype_mismatch"


def test_run_with_wrong_feature_count_raises_shape_mismatch(logistic: Exported) -> None:
    with pytest.raises(InvalidInputError) as info:
        logistic.model.run(np.zeros((1, N_FEATURES + 1), dtype=np.float32))
    assert info.value.code == "shape_mismatch"


def test_from_bytes_refuses_non_onnx_bytes() -> None:
    with pytest.raises(CandidateRejectedError) as info:
        OnnxModel.from_bytes(b"definitely not a protobuf \xff\xfe")
    assert info.value.code == "not_onnx"


def test_from_bytes_refuses_two_inputs() -> None:
    with pytest.raises(CandidateRejectedError) as info:
        OnnxModel.from_bytes(two_input_model().SerializeToString())
    assert info.value.code == "unsupported_signature"
    assert "exactly one input" in info.value.message


def test_from_bytes_refuses_dynamic_feature_dimension() -> None:
    with pytest.raises(CandidateRejectedError) as info:
        OnnxModel.from_bytes(matmul_model([None, "features"]).SerializeToString())
    assert info.value.code == "unsupported_signature"


def test_from_bytes_refuses_external_data(tmp_path: Path) -> None:
    path = tmp_path / "external.onnx"
    onnx.save_model(matmul_model([None, 3]), path, save_as_external_data=True, size_threshold=0)
    with pytest.raises(CandidateRejectedError) as info:
        OnnxModel.from_bytes(path.read_bytes())
    assert info.value.code == "external_data"


def test_from_bytes_translates_onnxruntime_load_failure() -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["X"], ["Y"])],
        "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelLoadError) as info:
        OnnxModel.from_bytes(model.SerializeToString())
    assert "NoSuchOperator" in str(info.value)
    assert info.value.__cause__ is not None


def test_from_bytes_refuses_zero_threads(logistic: Exported) -> None:
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxModel.from_bytes(logistic.onnx_bytes, intra_op_threads=0)


def test_a_run_past_its_deadline_is_stopped_and_the_next_one_runs(
    logistic: Exported, data: Data
) -> None:
    """A graph whose loop count comes from its input answered a probe's zeros at once
    and never answered a real row: as champion it held the event loop, and the daemon
    answered nothing at all. A run past ``run_timeout_s`` is stopped."""
    from shadow_models import looping_model

    from shadow import ShadowError

    model = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.2)
    zeros = np.zeros((1, N_FEATURES), np.float32)
    np.testing.assert_allclose(model.run(zeros)["probabilities"], [[0.5, 0.5]])
    with pytest.raises(ShadowError) as info:
        model.run(np.ones((1, N_FEATURES), np.float32))
    assert info.value.code == "run_timeout" and "0.2 s" in info.value.message
    # the thread's next runs are not stopped: the flag was cleared
    for _ in range(3):
        np.testing.assert_allclose(model.run(zeros)["probabilities"], [[0.5, 0.5]])
    # a model that answers in time answers as without a deadline
    timed = OnnxModel.from_bytes(logistic.onnx_bytes, run_timeout_s=0.2)
    plain = OnnxModel.from_bytes(logistic.onnx_bytes)
    x = data.x_train[:50].astype(np.float32)
    np.testing.assert_array_equal(timed.run(x)["probabilities"], plain.run(x)["probabilities"])
    with pytest.raises(ValueError, match="`run_timeout_s` must be > 0"):
        OnnxModel.from_bytes(logistic.onnx_bytes, run_timeout_s=0)
