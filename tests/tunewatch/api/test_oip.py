"""The Open Inference Protocol as real clients speak it: tritonclient, JSON and binary."""

from __future__ import annotations

import numpy as np
import pytest

from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Running
from tunewatch._example import ExampleModel, example_data
from tunewatch.api._errors import ApiError
from tunewatch.api._oip import encode_outputs


@pytest.fixture(scope="module")
def triton(running: Running):  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=running.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_probabilities_equal_onnxruntime(
    binary: bool,
    running: Running,
    triton,
    trained: list[ExampleModel],  # type: ignore[no-untyped-def]
) -> None:
    import tritonclient.http as httpclient

    x, _ = example_data(5, seed=42)
    x = np.clip(x, -9, 9)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = triton.infer(
        MODEL, [inp], outputs=outputs, request_id=f"triton-{binary}", headers=running.auth("scorer")
    )
    got = result.as_numpy("probabilities")
    expected = OnnxModel.from_bytes(trained[0].onnx).run(x)["probabilities"]
    np.testing.assert_array_equal(got, expected)
    assert result.get_response()["id"] == f"triton-{binary}"
    assert result.get_response()["model_version"] == "1"


def test_tritonclient_health_and_metadata(running: Running, triton) -> None:  # type: ignore[no-untyped-def]
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    meta = triton.get_model_metadata(MODEL, headers=running.auth("scorer"))
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert meta["versions"] == ["1", "2"]


def test_named_version_scores_with_that_version(
    running: Running,
    triton,  # type: ignore[no-untyped-def]
    trained: list[ExampleModel],
) -> None:
    import tritonclient.http as httpclient

    x, _ = example_data(3, seed=7)
    x = np.clip(x, -9, 9)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = triton.infer(MODEL, [inp], model_version="2", headers=running.auth("scorer"))
    expected = OnnxModel.from_bytes(trained[1].onnx).run(x)["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("values", "finite"),
    [
        ([0.25, 0.75], True),
        ([1e308, 1e308], True),  # the sum overflows; every value is finite
        ([float("nan"), 0.5], False),
        ([float("inf"), 0.5], False),
        ([float("inf"), float("-inf")], False),
    ],
)
def test_a_non_finite_model_output_is_a_422_and_a_large_finite_one_is_not(
    values: list[float], finite: bool
) -> None:
    for dtype in (np.float32, np.float64):
        if dtype is np.float32 and 1e308 in values:
            continue
        outputs = {"probabilities": np.asarray([values], dtype=dtype)}
        if finite:
            assert encode_outputs(outputs, None)[0]["data"].tolist() == values
        else:
            with pytest.raises(ApiError) as err:
                encode_outputs(outputs, None)
            assert (err.value.status, err.value.code) == (422, "non_finite_output")
