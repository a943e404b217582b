"""``/openapi.json`` describes what the routes answer: every error as ``{"error", "code"}``
(``ErrorBody``), never FastAPI's default 422 ``{"detail": [...]}`` (a request it finds
invalid is answered 400 ``invalid_request``); a bearer token on every route that refuses a
caller without one, and none on the probes, the scrape and the OIP health routes.

The schema documented 422 ``HTTPValidationError`` on every FastAPI route, no 400, 401,
403 or 404 on any, and no security scheme, while every ``/v1`` route answers 401 without a
token."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.openapi.models import OpenAPI

from tests.tunewatch.conftest import MODEL, Running

BEARER = [{"bearer": []}]
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in sorted(spec["paths"].items())
        for method, op in sorted(item.items())
        if method in METHODS
    ]


def _error_schema(op: dict[str, Any], status: str) -> Any:
    response = op["responses"].get(status, {})
    return response.get("content", {}).get("application/json", {}).get("schema")


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"model": MODEL}.get(m.group(1), "1"), path)


def test_no_operation_documents_the_default_422_validation_body(spec: dict[str, Any]) -> None:
    documented = [f"{m.upper()} {p}" for p, m, op in _operations(spec) if "422" in op["responses"]]
    # the real 422s, in the error body: a drift report evidently could not build, and a
    # model's non-finite answer
    assert documented == [
        "GET /v1/models/{model}/evaluations/{evaluation_id}/report",
        "POST /v2/models/{model}/infer",
        "POST /v2/models/{model}/versions/{version}/infer",
    ]
    for path in documented[1:]:
        [post] = spec["paths"][path.split()[1]].values()
        assert "`non_finite_output`" in post["responses"]["422"]["description"]
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas


def test_the_error_body_schema_is_what_an_invalid_request_is_answered(
    running: Running, spec: dict[str, Any]
) -> None:
    error_body = spec["components"]["schemas"]["ErrorBody"]
    assert error_body["type"] == "object"
    assert set(error_body["required"]) == {"error", "code"} == set(error_body["properties"])
    r = httpx.get(f"{running.url}/v1/jobs?limit=0", headers=running.auth("viewer"), timeout=60)
    assert r.status_code == 400
    assert set(r.json()) == set(error_body["required"])
    assert r.json()["code"] == "invalid_request"
    assert _error_schema(spec["paths"]["/v1/jobs"]["get"], "400") == ERROR_REF


def test_the_bearer_scheme_is_http_bearer(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in spec  # per operation: the probes need no token


def test_an_operation_asks_for_a_token_exactly_where_the_daemon_refuses_a_caller_without_one(
    running: Running, spec: dict[str, Any]
) -> None:
    wrong = []
    with httpx.Client(base_url=running.url, timeout=60) as client:
        for path, method, op in _operations(spec):
            r = client.request(method.upper(), _url(path), json={} if method != "get" else None)
            refused = r.status_code == 401
            if op.get("security", []) != (BEARER if refused else []):
                wrong.append(f"{method.upper()} {path}: {r.status_code}, {op.get('security')}")
    assert wrong == []


def test_every_v1_operation_documents_its_errors_as_the_error_body(spec: dict[str, Any]) -> None:
    v1 = [(p, m, op) for p, m, op in _operations(spec) if p.startswith("/v1/")]
    assert len(v1) > 30
    wrong = []
    for path, method, op in v1:
        expected = {"400", "401", "403"} | ({"404"} if "{" in path else set())
        for status in sorted(expected):
            if _error_schema(op, status) != ERROR_REF:
                wrong.append(f"{method.upper()} {path}: {status}")
        if op.get("security") != BEARER:
            wrong.append(f"{method.upper()} {path}: security {op.get('security')}")
    assert wrong == []


def test_every_documented_error_answer_is_the_error_body(spec: dict[str, Any]) -> None:
    wrong = [
        f"{m.upper()} {p}: {status}"
        for p, m, op in _operations(spec)
        for status in op["responses"]
        if status.isdigit() and int(status) >= 400 and _error_schema(op, status) != ERROR_REF
    ]
    assert wrong == []


def test_the_open_routes_document_no_token(spec: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live"):
        op = spec["paths"][path]["get"]
        assert "security" not in op and "401" not in op["responses"], path
    for path in ("/v2/models/{model}/ready", "/v2/models/{model}/versions/{version}/ready"):
        assert "security" not in spec["paths"][path]["get"], path
    assert spec["paths"]["/v2/models/{model}"]["get"]["security"] == BEARER


def test_the_schema_is_a_valid_openapi_3_document(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    OpenAPI.model_validate(spec)  # FastAPI's own model of an OpenAPI 3.1 document
    assert _refs(spec) <= {f"#/components/schemas/{name}" for name in spec["components"]["schemas"]}
