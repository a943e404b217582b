"""The Open Inference Protocol as real clients speak it: tritonclient, JSON and binary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Running, logistic_variant, make_daemon
from tunewatch._background import BackgroundServer
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
# tritonclient's request_compression_algorithm sends Content-Encoding: gzip or deflate;
# such a body was read as raw JSON and answered 400 invalid_json
@pytest.mark.parametrize("algorithm", [None, "gzip", "deflate"], ids=["plain", "gzip", "deflate"])
def test_tritonclient_probabilities_equal_onnxruntime(
    algorithm: str | None,
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
    request_id = f"triton-{algorithm}-{binary}"
    result = triton.infer(
        MODEL,
        [inp],
        outputs=outputs,
        request_id=request_id,
        headers=running.auth("scorer"),
        request_compression_algorithm=algorithm,
    )
    got = result.as_numpy("probabilities")
    np.testing.assert_array_equal(got, _onnxruntime(trained[0].onnx, x))
    assert result.get_response()["id"] == request_id
    assert result.get_response()["model_version"] == "1"


def _onnxruntime(onnx: bytes, x: np.ndarray) -> np.ndarray:
    """The probabilities a plain onnxruntime session gives, not the daemon's own wrapper
    (which the server scores with: a bug in it would be on both sides)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    [probabilities] = session.run(["probabilities"], {"input": x})
    return np.asarray(probabilities)


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


@pytest.fixture(scope="module")
def mixed(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The example champion and challenger, plus version 3 taking float64 input and
    version 4 answering other output names (the same features: the registry accepts them)."""
    daemon, tokens = make_daemon(
        tmp_path_factory.mktemp("mixed"), trained, extra={"scheduler": {"enabled": False}}
    )
    for variant in (
        logistic_variant(input_dtype="float64"),
        logistic_variant(outputs=("predicted", "scores")),
    ):
        daemon.registry.register(MODEL, variant.onnx, variant.metadata, actor="test")
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _infer_body(rid: str, x: np.ndarray, datatype: str, **extra: object) -> dict[str, object]:
    tensor = {"name": "input", "shape": list(x.shape), "datatype": datatype}
    return {"id": rid, "inputs": [{**tensor, "data": x.ravel().tolist()}], **extra}


def test_a_pinned_version_reads_its_own_input_dtype(mixed: Running) -> None:
    x, _ = example_data(3, seed=5)
    x64 = x.astype(np.float64)
    expected = OnnxModel.from_bytes(logistic_variant(input_dtype="float64").onnx).run(x64)
    with httpx.Client(base_url=mixed.url, headers=mixed.auth("scorer")) as c:
        r = c.post(f"/v2/models/{MODEL}/versions/3/infer", json=_infer_body("p64", x64, "FP64"))
        assert r.status_code == 200, r.text
        (probs,) = (o for o in r.json()["outputs"] if o["name"] == "probabilities")
        assert probs["datatype"] == "FP64"
        np.testing.assert_array_equal(np.reshape(probs["data"], (3, 2)), expected["probabilities"])
        # the champion's datatype is not the version's: refused as such, not by onnxruntime
        r = c.post(f"/v2/models/{MODEL}/versions/3/infer", json=_infer_body("p32", x, "FP32"))
        assert r.status_code == 400 and r.json()["code"] == "dtype_mismatch"
        assert "FP64" in r.json()["error"]
    outputs = mixed.daemon.store.get_outputs(MODEL, "p64")
    assert [(o.version, o.role) for o in outputs] == [(3, "challenger")]


def test_a_pinned_version_answers_its_own_output_names(mixed: Running) -> None:
    x, _ = example_data(2, seed=6)
    with httpx.Client(base_url=mixed.url, headers=mixed.auth("scorer")) as c:
        r = c.post(
            f"/v2/models/{MODEL}/versions/4/infer",
            json=_infer_body("n1", x, "FP32", outputs=[{"name": "scores"}]),
        )
        assert r.status_code == 200, r.text
        assert [o["name"] for o in r.json()["outputs"]] == ["scores"]
        r = c.post(
            f"/v2/models/{MODEL}/versions/4/infer",
            json=_infer_body("n2", x, "FP32", outputs=[{"name": "probabilities"}]),
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "unknown_output" and "scores" in r.json()["error"]


def test_version_metadata_is_that_versions_own_signature(mixed: Running) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=mixed.url.removeprefix("http://"))
    try:
        meta = client.get_model_metadata(MODEL, model_version="3", headers=mixed.auth("scorer"))
        assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 8]}]
        assert meta["versions"] == ["3"]
        meta = client.get_model_metadata(MODEL, model_version="4", headers=mixed.auth("scorer"))
        assert [o["name"] for o in meta["outputs"]] == ["predicted", "scores"]
        champion = client.get_model_metadata(MODEL, headers=mixed.auth("scorer"))
        assert champion["versions"] == ["1", "2", "3", "4"]
        assert champion["inputs"][0]["datatype"] == "FP32"
    finally:
        client.close()
    with httpx.Client(base_url=mixed.url, headers=mixed.auth("scorer")) as c:
        for version in ("9", "x", "1" * 11):
            r = c.get(f"/v2/models/{MODEL}/versions/{version}")
            assert r.status_code == 404, (version, r.text)
            assert r.json()["code"] == "version_not_found"
        r = c.get(f"/v2/models/{MODEL}/versions/1", headers={"Authorization": "Bearer tw_nope"})
        assert r.status_code == 401
        assert "/v2/models/{model}/versions/{version}" in c.get("/openapi.json").json()["paths"]


def _scaled_variant(factor: float) -> ExampleModel:
    """A version taking and answering float64: its probabilities are the first feature
    past 1000 times ``factor`` (past float32's range for a large feature) and 1 less that,
    0 and 1 for a feature up to 1000: registration holds a binary model's outputs on its
    probe's rows (zeros, 1, -1 and 1000) to [0, 1], its rows summing to 1."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["first"]),
        helper.make_node("Sub", ["first", "thousand"], ["past"]),
        helper.make_node("Relu", ["past"], ["beyond"]),
        helper.make_node("Mul", ["beyond", "factor"], ["scaled"]),
        helper.make_node("Sub", ["one", "scaled"], ["rest"]),
        helper.make_node("Concat", ["scaled", "rest"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    constants = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("factor", TensorProto.DOUBLE, [], [factor]),
        helper.make_tensor("thousand", TensorProto.DOUBLE, [], [1000.0]),
        helper.make_tensor("one", TensorProto.DOUBLE, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "scaled",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, 8])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, 2]),
        ],
        constants,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    variant = logistic_variant(input_dtype="float64")
    return ExampleModel(
        name="scaled",
        onnx=proto.SerializeToString(),
        metadata=variant.metadata,
    )


def test_a_float64_value_beyond_float32_is_refused_not_recorded_as_inf(
    mixed: Running, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A float64 version took 1e39 and answered 200 while the durable request record
    (float32, as the store and the other versions read rows) held inf; an output past
    float32 was recorded as inf the same way."""
    x = np.zeros((1, 8))
    x[0, 1] = 1e39
    with httpx.Client(base_url=mixed.url, headers=mixed.auth("scorer")) as c:
        r = c.post(f"/v2/models/{MODEL}/versions/3/infer", json=_infer_body("big", x, "FP64"))
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "out_of_range"
        message = r.json()["error"]
        assert "'input'" in message and "1e+39" in message and "column 1" in message
        assert "float32" in message and "3.40282e+38" in message
        x[0, 1] = -3e38  # within float32: taken and recorded as sent
        r = c.post(f"/v2/models/{MODEL}/versions/3/infer", json=_infer_body("edge", x, "FP64"))
        assert r.status_code == 200, r.text
    store = mixed.daemon.store
    assert store.get_request(MODEL, "big") is None
    edge = store.get_request(MODEL, "edge")
    assert edge is not None
    assert np.frombuffer(edge.inputs, dtype=np.float32)[1] == np.float32(-3e38)

    scaled = _scaled_variant(10.0)
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    version = daemon.registry.register(MODEL, scaled.onnx, scaled.metadata, actor="test").version
    daemon.runtime.load(MODEL)
    scorer = {"Authorization": f"Bearer {tokens['scorer']}"}
    x[0, 0] = 3e38  # the output: 3e39 and -3e39
    path = f"/v2/models/{MODEL}/versions/{version}/infer"
    try:
        with BackgroundServer(daemon.app) as server:
            with httpx.Client(base_url=server.url, headers=scorer) as c:
                for rid, wanted in (("all", None), ("label-only", [{"name": "label"}])):
                    extra = {} if wanted is None else {"outputs": wanted}
                    r = c.post(path, json=_infer_body(rid, x, "FP64", **extra))
                    assert r.status_code == 422, (rid, r.text)
                    assert r.json()["code"] == "output_out_of_range"
                    message = r.json()["error"]
                    assert "'probabilities'" in message and "3e+39" in message
                    assert "float32" in message
                    assert daemon.store.get_request(MODEL, rid) is None
                x[0, 0] = 3e37  # answered 3e38: within float32
                r = c.post(path, json=_infer_body("fits", x, "FP64"))
                assert r.status_code == 200, r.text
        (output,) = daemon.store.get_outputs(MODEL, "fits")
        assert np.frombuffer(output.values, dtype=np.float32)[0] == np.float32(3e38)
    finally:
        daemon.close()


def test_a_request_without_id_never_conflicts_with_a_client_id(running: Running) -> None:
    """Generated ids were a per-process prefix and a counter, echoed to the client: one
    could claim the next ones, and requests sent without an id then answered 409."""
    x, _ = example_data(1, seed=8)
    body = _infer_body("unused", np.clip(x, -9, 9), "FP32")
    del body["id"]
    with httpx.Client(base_url=running.url, headers=running.auth("scorer")) as c:
        seen = c.post(f"/v2/models/{MODEL}/infer", json=body)
        assert seen.status_code == 200, seen.text
        first = seen.json()["id"]
        stem, _, counter = first.rpartition("-")
        step = int(counter) if counter.isdigit() else 0
        # the ids the old scheme would have generated next, and the seen one extended
        claimed = {f"{stem}-{step + k}" for k in range(1, 21)} | {f"{first}-1", first + "1"}
        for rid in sorted(claimed):
            r = c.post(f"/v2/models/{MODEL}/infer", json={**body, "id": rid})
            assert r.status_code == 200, r.text
        generated = []
        for _ in range(20):
            r = c.post(f"/v2/models/{MODEL}/infer", json=body)
            assert r.status_code == 200, r.text
            generated.append(r.json()["id"])
    assert len(set(generated)) == len(generated) and not claimed & set(generated)
    assert all(running.daemon.store.get_request(MODEL, rid) is not None for rid in generated)


def test_generated_ids_rise_in_order_so_the_store_appends_them() -> None:
    """Wholly random ids (128 bits) put every new request and output at a random place in
    the store's primary-key B-trees: at 320k rows a SQLite insert cost 4x that of
    ordered ids (57 µs against 14 µs per request), and the scoring bench's throughput with
    recording halved. Ids lead with the time and end in 64 random bits: appended in
    order, and still not guessable."""
    from tunewatch.api._oip_request import _request_id

    ids = [_request_id(None) for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    tails = {rid[-16:] for rid in ids}
    assert len(tails) == len(ids) and all(len(rid) == 30 for rid in ids)
    int(ids[0], 16)  # hex


@pytest.mark.parametrize(
    ("kind", "parameters"),
    [("list", [1]), ("string", "x"), ("zero", 0), ("empty-list", [])],
    ids=["list", "string", "zero", "empty_list"],
)
def test_request_parameters_that_are_not_an_object_are_refused(
    running: Running, kind: str, parameters: object
) -> None:
    """The same mistake in a tensor's `parameters` was a 400; at the top level the
    request was scored as if `parameters` (and its `unit_key`) had not been sent."""
    x, _ = example_data(1, seed=3)
    rid = f"params-{kind}"
    body = _infer_body(rid, np.clip(x, -9, 9), "FP32", parameters=parameters)
    r = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request" and "`parameters`" in r.json()["error"]
    assert running.daemon.store.get_request(MODEL, rid) is None


def test_a_tensor_s_parameters_that_are_not_an_object_name_the_tensor(running: Running) -> None:
    x, _ = example_data(1, seed=3)
    body = _infer_body("tensor-params", np.clip(x, -9, 9), "FP32")
    body["inputs"][0]["parameters"] = []  # type: ignore[index]
    r = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    assert "`inputs[0].parameters`" in r.json()["error"]


def test_a_classification_output_is_refused_not_answered_with_probabilities(
    running: Running, triton
) -> None:  # type: ignore[no-untyped-def]
    """tritonclient's `class_count` asks for the top classes (`"classification": N`); the
    parameter was dropped and the raw FP32 probabilities came back in their place."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    x, _ = example_data(1, seed=4)
    inp = httpclient.InferInput("input", [1, 8], "FP32")
    inp.set_data_from_numpy(np.clip(x, -9, 9).astype(np.float32))
    wanted = [httpclient.InferRequestedOutput("probabilities", class_count=1)]
    with pytest.raises(InferenceServerException) as err:
        triton.infer(
            MODEL, [inp], outputs=wanted, request_id="classified", headers=running.auth("scorer")
        )
    assert err.value.status() == "400"
    assert "classification" in err.value.message() and "probabilities" in err.value.message()
    body = _infer_body(
        "classified",
        np.clip(x, -9, 9),
        "FP32",
        outputs=[{"name": "probabilities", "parameters": {"classification": 1}}],
    )
    r = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )
    assert r.status_code == 400 and r.json()["code"] == "unsupported_parameter", r.text
    assert running.daemon.store.get_request(MODEL, "classified") is None


def test_an_output_s_binary_data_parameter_is_still_answered_in_json(running: Running) -> None:
    """tritonclient sends `"binary_data": true` with every requested output by default."""
    x, _ = example_data(1, seed=4)
    body = _infer_body(
        "binary-data-output",
        np.clip(x, -9, 9),
        "FP32",
        outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}],
    )
    r = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]


def _binary_request(rid: str, x: np.ndarray, **extra: object) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request: the JSON header, then the input's raw bytes."""
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    head = {
        "id": rid,
        "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
        **extra,
    }
    header = json.dumps(head).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "path",
    [f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer"],
    ids=["champion", "pinned"],
)
def test_an_output_requested_twice_is_refused_before_scoring(
    running: Running, path: str, binary: bool
) -> None:
    """Each repeat of a requested output was encoded again: 25 bytes of request added a
    copy of the output (82 KB at 4,096 rows), and an 8 MiB request asked for ~27 GB."""
    x = np.clip(example_data(2, seed=9)[0], -9, 9).astype(np.float32)
    rid = f"twice-{binary}-{'pinned' if 'versions' in path else 'champion'}"
    wanted = [{"name": "probabilities"}, {"name": "label"}, {"name": "probabilities"}]

    def infer(outputs: list[dict[str, str]]) -> httpx.Response:
        if binary:
            content, headers = _binary_request(rid, x, outputs=outputs)
        else:
            body = _infer_body(rid, x, "FP32", outputs=outputs)
            content, headers = json.dumps(body).encode(), {}
        return httpx.post(
            f"{running.url}{path}", content=content, headers={**headers, **running.auth("scorer")}
        )

    r = infer(wanted)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "output 'probabilities' requested more than once",
        "code": "invalid_request",
    }
    assert running.daemon.store.get_request(MODEL, rid) is None
    assert running.daemon.store.get_outputs(MODEL, rid) == []
    r = infer(wanted[:2])  # each named once: answered in the order asked
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities", "label"]
