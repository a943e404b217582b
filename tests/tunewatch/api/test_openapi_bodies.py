"""``/openapi.json`` describes the bodies of the hand-parsed routes (OIP inference,
mirror, feedback) as the parsers read them: a body valid against the documented schema
is accepted (200), and one the schema refuses is refused (4xx), case by case; and the
statuses the OIP readiness routes answer are documented.

Those routes documented no request body at all (a client generator, or Schemathesis,
could build no valid request), and the readiness routes documented only their 200."""

from __future__ import annotations

import base64
import itertools
from typing import Any, get_args

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._example import ExampleModel
from tunewatch.store import LabelStatus

INFER = "/v2/models/{model}/infer"
MIRROR = "/v1/models/{model}/records"
FEEDBACK = "/v1/models/{model}/feedback"
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
_ids = itertools.count()


def _id() -> str:
    return f"openapi-body-{next(_ids)}"


@pytest.fixture(scope="module")
def tensor(running: Running) -> dict[str, Any]:
    """The model's input as metadata names it, one row of :data:`ROW`."""
    meta = httpx.get(f"{running.url}/v2/models/{MODEL}", headers=running.auth("scorer")).json()
    [spec] = meta["inputs"]
    return {"name": spec["name"], "shape": [1, len(ROW)], "datatype": spec["datatype"], "data": ROW}


def _validator(spec: dict[str, Any], path: str) -> Draft202012Validator:
    body = spec["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _post(running: Running, path: str, role: str, body: Any) -> httpx.Response:
    return httpx.post(
        running.url + path.format(model=MODEL), json=body, headers=running.auth(role), timeout=60
    )


def _check(
    running: Running, spec: dict[str, Any], path: str, role: str, cases: dict[str, Any]
) -> None:
    """Each case named ``ok…`` is valid and accepted; every other is invalid and refused."""
    validator = _validator(spec, path)
    for name, body in cases.items():
        valid = name.startswith("ok")
        assert validator.is_valid(body) is valid, (name, list(validator.iter_errors(body)))
        r = _post(running, path, role, body)
        if valid:
            assert r.status_code == 200, (name, r.text)
        else:
            assert r.status_code in (400, 413), (name, r.status_code, r.text)
            assert set(r.json()) == {"error", "code"}


def test_an_inference_body_is_accepted_exactly_when_its_documented_schema_says_so(
    running: Running, spec: dict[str, Any], tensor: dict[str, Any]
) -> None:
    output = spec["paths"][INFER]["post"]["responses"]["200"]["content"]["application/json"]
    assert set(output["schema"]["required"]) == {"model_name", "model_version", "id", "outputs"}
    meta = httpx.get(f"{running.url}/v2/models/{MODEL}", headers=running.auth("scorer")).json()
    first_output = meta["outputs"][0]["name"]
    cases = {
        "ok plain": {"inputs": [tensor]},
        "ok everything": {
            "id": _id(),
            "inputs": [{**tensor, "parameters": None}],
            "outputs": [{"name": first_output, "parameters": {"binary_data": False}}],
            "parameters": {"unit_key": "customer-7"},
        },
        "no inputs": {"id": _id()},
        "empty inputs": {"inputs": []},
        "two inputs": {"inputs": [tensor, tensor]},
        "unknown datatype": {"inputs": [{**tensor, "datatype": "FP33"}]},
        "no shape": {"inputs": [{k: v for k, v in tensor.items() if k != "shape"}]},
        "too many rows": {"inputs": [{**tensor, "shape": [65, len(ROW)]}]},
        "negative dimension": {"inputs": [{**tensor, "shape": [1, -8]}]},
        "empty id": {"id": "", "inputs": [tensor]},
        "long id": {"id": "x" * 129, "inputs": [tensor]},
        "numeric id": {"id": 7, "inputs": [tensor]},
        "empty unit key": {"inputs": [tensor], "parameters": {"unit_key": ""}},
        "output without a name": {"inputs": [tensor], "outputs": [{"parameters": {}}]},
        "parameters not an object": {"inputs": [tensor], "parameters": [1]},
    }
    _check(running, spec, INFER, "scorer", cases)


def test_a_mirror_body_is_accepted_exactly_when_its_documented_schema_says_so(
    running: Running, spec: dict[str, Any]
) -> None:
    def record(**fields: Any) -> dict[str, Any]:
        return {"id": _id(), "inputs": [ROW], "outputs": [[0.3, 0.7]], **fields}

    cases = {
        "ok one record": {"records": [record()]},
        "ok named version, one flat row": {"records": [record(version=1, inputs=ROW)]},
        "no records": {"records": []},
        "records not a list": {"records": record()},
        "another top-level field": {"records": [record()], "source": "x"},
        "another record field": {"records": [record(score=0.7)]},
        "no outputs": {"records": [{"id": _id(), "inputs": [ROW]}]},
        "no id": {"records": [{"inputs": [ROW], "outputs": [[0.3, 0.7]]}]},
        "version zero": {"records": [record(version=0)]},
        "version as text": {"records": [record(version="1")]},
        "version past the id range": {"records": [record(version=2**31)]},
        "long id": {"records": [record(id="x" * 129)]},
        "inputs as text": {"records": [record(inputs="0.1,0.2")]},
        # a flat `outputs` list is a column, one value per input row: two for one row
        "flat outputs, one input row": {"records": [record(outputs=[0.3, 0.7])]},
        "rows and numbers mixed": {"records": [record(outputs=[[0.3, 0.7], 0.7])]},
        "too many rows": {"records": [record(inputs=[ROW] * 65, outputs=[[0.3, 0.7]] * 65)]},
    }
    _check(running, spec, MIRROR, "scorer", cases)


def test_a_feedback_body_is_accepted_exactly_when_its_documented_schema_says_so(
    running: Running, spec: dict[str, Any], tensor: dict[str, Any]
) -> None:
    scored = _post(running, INFER, "scorer", {"inputs": [tensor]}).json()["id"]
    results = spec["paths"][FEEDBACK]["post"]["responses"]["200"]["content"]["application/json"]
    status = results["schema"]["properties"]["results"]["items"]["properties"]["status"]
    assert status["enum"] == list(get_args(LabelStatus))
    cases = {
        "ok a label": {"items": [{"request_id": scored, "label": 1}]},
        "ok a list and an outcome": {"items": [{"request_id": _id(), "label": [0], "outcome": 2}]},
        "no items": {"items": []},
        "another top-level field": {"items": [{"request_id": _id(), "label": 1}], "x": 1},
        "another item field": {"items": [{"request_id": _id(), "label": 1, "note": "late"}]},
        "no label": {"items": [{"request_id": _id()}]},
        "label as text": {"items": [{"request_id": _id(), "label": "1"}]},
        "label a boolean": {"items": [{"request_id": _id(), "label": True}]},
        "empty label list": {"items": [{"request_id": _id(), "label": []}]},
        "outcome as text": {"items": [{"request_id": _id(), "label": 1, "outcome": "2"}]},
        "empty request id": {"items": [{"request_id": "", "label": 1}]},
    }
    _check(running, spec, FEEDBACK, "labeller", cases)


def test_inference_documents_the_binary_extension(spec: dict[str, Any]) -> None:
    for path in (INFER, "/v2/models/{model}/versions/{version}/infer"):
        op = spec["paths"][path]["post"]
        assert "application/octet-stream" in op["requestBody"]["content"]
        headers = [p["name"] for p in op["parameters"] if p["in"] == "header"]
        assert headers == ["Inference-Header-Content-Length"]
        named = sorted(p["name"] for p in op["parameters"] if p["in"] == "path")
        assert named == sorted(n for n in ("model", "version") if "{" + n + "}" in path)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope/ready", 404),
        ("/v2/models/{model}/versions/99/ready", 404),
        ("/v2/models/{model}/ready", 200),
    ],
    ids=["unknown-model", "version-not-in-service", "ready"],
)
def test_a_readiness_answer_is_documented(
    running: Running, spec: dict[str, Any], path: str, status: int
) -> None:
    r = httpx.get(running.url + path.format(model=MODEL), timeout=60)
    assert r.status_code == status, r.text
    template = path.replace("nope", "{model}").replace("99", "{version}")
    assert str(status) in spec["paths"][template]["get"]["responses"]


def test_a_registration_conflict_is_documented(
    running: Running, spec: dict[str, Any], trained: list[ExampleModel]
) -> None:
    body = {
        "onnx_base64": base64.b64encode(trained[0].onnx).decode(),
        "task": "regression",  # credit is a binary model
        "feature_names": list(trained[0].metadata.feature_names),
    }
    r = _post(running, "/v1/models/{model}/versions", "admin", body)
    assert r.status_code == 409 and r.json()["code"] == "task_mismatch", r.text
    documented = spec["paths"]["/v1/models/{model}/versions"]["post"]["responses"]["409"]
    assert "`task_mismatch`" in documented["description"]
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
