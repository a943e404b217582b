"""``/openapi.json``: FastAPI's schema of its own routes, plus the hand-described plain
Starlette routes (OIP, mirror, feedback, the Alertmanager webhook, the probes) with their
request and answer bodies, every route's errors and token, and standard path parameters.

The bodies of the hand-parsed routes are described here as JSON Schema (those routes read
JSON straight into numpy, not through pydantic: :mod:`tunewatch.api._oip_request`,
:mod:`tunewatch.api._records`), with the configured limits (``server.max_items``,
``server.max_batch_rows``); ``tests/tunewatch/api/test_openapi_bodies.py`` holds the
schemas to what the parsers accept and refuse."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any, get_args

import orjson
from fastapi import FastAPI

from tunewatch.api import _records
from tunewatch.api._errors import ErrorBody
from tunewatch.api._feedback_limit import BUSY_RESPONSES as FEEDBACK_BUSY
from tunewatch.api._front import OPEN_PATHS
from tunewatch.api._mirror_limit import BUSY_RESPONSES as MIRROR_BUSY
from tunewatch.api._mirror_time import MAX_CLOCK_SKEW_S, SCORED_AT_PATTERN
from tunewatch.api._oip_request import MAX_ID_LENGTH, OIP_DATATYPES
from tunewatch.store import MAX_ID, MAX_UNIT_KEY_LENGTH, LabelStatus

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_BEARER = "bearer"
# What a route that takes a token may answer besides its own errors, by status.
_TOKEN_ERRORS = {
    "400": "`invalid_request` (a parameter or the body is not what the route takes) or "
    "another refusal of the request as sent",
    "401": "`unauthenticated` (no `Authorization: Bearer` token) or `invalid_token` (not "
    "known, or revoked)",
    "403": "`forbidden`: the token's role may not do this",
    "503": "`store_unavailable`: the store cannot be reached (the token is looked up there "
    "too); retry later",
}
_NOT_FOUND = "a model, version or id in the path that is not known (`model_not_found`, …)"
_TOO_LARGE = (
    "`body_too_large`: the body exceeds `server.max_body_bytes` (a registration's: its ONNX "
    "file and reference snapshot at `server.max_artefact_bytes` each, base64-encoded, plus "
    "`server.max_body_bytes`; each file decoded is held to `server.max_artefact_bytes`)"
)
_ENCODING = (
    "`unsupported_content_encoding`: a `Content-Encoding` other than gzip, deflate or identity"
)
# Every route taking a body reads JSON, whether or not `Content-Type` says so, but not
# another type (tunewatch.api._route.check_json_type); the inference routes and the
# webhook read any, and document their own 415.
_UNSUPPORTED = (
    "`unsupported_media_type`: a `Content-Type` other than JSON (a form's), or " + _ENCODING
)


def _document_errors_and_tokens(schema: dict[str, Any]) -> None:
    """Make ``schema`` say what the routes answer. FastAPI documents a 422
    ``{"detail": [...]}`` on every route taking parameters, which is never answered (an
    invalid request is 400 ``invalid_request``, :mod:`tunewatch.api._errors`), and
    neither errors nor tokens. So here: that 422 is dropped; every 4xx or 5xx is
    documented as :class:`ErrorBody`; and each operation not among the routes that read
    no token (the front's list: the probes, the scrape, the OIP health routes) asks for
    the bearer token and documents the errors any such route may answer."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    components["securitySchemes"] = {
        _BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "an API token (`tunewatch tokens create`); its role decides "
            "what it may do",
        }
    }
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = op["responses"]
            default_422 = responses.get("422", {}).get("content", {}).get("application/json")
            if default_422 == {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}:
                del responses["422"]
            if not OPEN_PATHS.match(path):
                op["security"] = [{_BEARER: []}]
                for status, description in _TOKEN_ERRORS.items():
                    responses.setdefault(status, {"description": description})
                if "{" in path:
                    responses.setdefault("404", {"description": _NOT_FOUND})
                if method not in ("get", "head", "options"):
                    responses.setdefault("413", {"description": _TOO_LARGE})
                    responses.setdefault("415", {"description": _UNSUPPORTED})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    body = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    response.setdefault("content", {"application/json": body})
            op["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):  # referenced by that 422 only
        if f'"#/components/schemas/{name}"'.encode() not in orjson.dumps(schema):
            schemas.pop(name, None)


def _json(schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
    if description is not None:
        body["description"] = description
    return body


def _id(what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LENGTH,
        "description": f"{what}: printable characters",
    }


_NUMBER: dict[str, Any] = {"type": "number"}
_NUMBERS: dict[str, Any] = {"type": "array", "items": _NUMBER}


def _matrix(what: str, max_rows: int, flat: str = "one row") -> dict[str, Any]:
    """A record's rows as :func:`tunewatch.api._mirror_body._matrix` reads them: a list
    of rows, or a flat list of numbers, which is ``flat``; not both mixed."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_rows,
        "anyOf": [{"items": _NUMBERS}, {"items": _NUMBER}],
        "description": f"{what}: a list of rows (lists of numbers), or {flat}",
    }


def _infer_request(max_rows: int) -> dict[str, Any]:
    """An OIP v2 inference request, as :func:`~tunewatch.api._oip_request.decode_infer_request`
    reads it: one input tensor named and typed as the model's, its first dimension the
    batch's rows; other fields the protocol defines are ignored."""
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "description": "the model's input"},
            "shape": {
                "type": "array",
                "minItems": 1,
                "prefixItems": [{"type": "integer", "minimum": 0, "maximum": max_rows}],
                "items": {"type": "integer", "minimum": 0},
                "description": "rows first (`server.max_batch_rows` at most)",
            },
            "datatype": {"type": "string", "enum": sorted(OIP_DATATYPES)},
            "data": {
                "type": "array",
                "description": "the values, flat or nested; absent when `binary_data_size` "
                "says they follow the JSON (binary tensor extension)",
            },
            "parameters": {
                "type": ["object", "null"],
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
    }
    output = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {"type": ["object", "null"]},
        },
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": _id("echoed in the answer; generated when absent"),
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor},
            "outputs": {
                "type": "array",
                "items": output,
                "description": "the outputs to answer, each once (default: all)",
            },
            "parameters": {
                "type": ["object", "null"],
                "properties": {
                    "unit_key": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_UNIT_KEY_LENGTH,
                        "description": "keeps a live split's unit on one arm",
                    }
                },
            },
        },
    }


_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": _NUMBERS,
                },
            },
        },
    },
}


def _items_of(key: str, item: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: {"type": "array", "minItems": 1, "maxItems": max_items, "items": item}},
    }


def _mirror_request(max_items: int, max_rows: int) -> dict[str, Any]:
    record = {
        "type": "object",
        "required": ["id", "inputs", "outputs"],
        "additionalProperties": False,
        "properties": {
            "id": _id("the request's id, unique per model"),
            "inputs": _matrix("the rows scored", max_rows),
            "outputs": _matrix(
                "the answer, one row per input row, as wide as the version's output (a "
                "classifier's: probabilities)",
                max_rows,
                "one value per input row (a one-column output)",
            ),
            "version": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ID,
                "description": "the version that answered (default: the champion at "
                "`scored_at`, else the champion served now)",
            },
            "scored_at": {
                "type": "string",
                "format": "date-time",
                "pattern": SCORED_AT_PATTERN,
                "description": "when the serving stack scored the record: an RFC 3339 time "
                "with its offset (`2025-06-01T12:00:00Z`), stored as the request's time "
                f"(default: when it is posted); at most {MAX_CLOCK_SKEW_S:g} s in the "
                "future, not older than `recording.retention_days`",
            },
        },
        # one input row (a flat list, or a list of one) is answered by one output row (a
        # list of one); row counts are compared no further in the schema
        "if": {"properties": {"inputs": {"anyOf": [{"maxItems": 1}, {"items": _NUMBER}]}}},
        "then": {"properties": {"outputs": {"maxItems": 1}}},
    }
    return _items_of("records", record, max_items)


def _feedback_request(max_items: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["request_id", "label"],
        "additionalProperties": False,
        "properties": {
            "request_id": _id("the scored request's id"),
            "label": {
                "anyOf": [_NUMBER, {**_NUMBERS, "minItems": 1}],
                "description": "binary: 0 or 1; multiclass: a class index; regression: a "
                "number; a list for a request of several rows",
            },
            "outcome": {**_NUMBER, "description": "the business outcome, e.g. its cost"},
        },
    }
    return _items_of("items", item, max_items)


_MIRROR_RESPONSE = {
    "type": "object",
    "required": ["accepted", "duplicates", "conflicts"],
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "array", "items": {"type": "string"}},
        "conflicts": {"type": "array", "items": {"type": "string"}},
    },
}
_FEEDBACK_RESPONSE = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["request_id", "status"],
                "properties": {
                    "request_id": {"type": "string"},
                    "status": {"type": "string", "enum": list(get_args(LabelStatus))},
                },
            },
        }
    },
}
_BINARY_HEADER = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "binary tensor extension: the body's first N bytes are the JSON "
    "request, then the tensors' raw little-endian bytes (`binary_data_size`)",
}


def _scoring_routes(max_items: int, max_rows: int) -> dict[str, dict[str, Any]]:
    """The OIP inference routes, mirror and feedback (none requires a Content-Type: the
    JSON is read whatever the header says, as tritonclient sends none or
    ``application/octet-stream``)."""
    infer_body = {
        "required": True,
        "content": {
            "application/json": {"schema": _infer_request(max_rows)},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "the binary tensor extension (`Inference-Header-Content-Length`)",
            },
        },
    }
    duplicate = "`duplicate_request_id`: its `id` was recorded already"
    responses: dict[str, Any] = {
        "200": _json(_INFER_RESPONSE, "the champion's (or the version's) answer"),
        "409": {"description": duplicate},
        "415": {"description": _ENCODING},
        "422": {"description": "`non_finite_output`: the model answered NaN or infinity"},
    }
    infer = {"parameters": [_BINARY_HEADER], "requestBody": infer_body, "responses": responses}
    return {
        "/v2/models/{model}/infer": {
            "summary": "Open Inference Protocol v2 inference (JSON or binary tensor "
            "extension). Scored by the champion, recorded durably, shadowed.",
            **infer,
        },
        "/v2/models/{model}/versions/{version}/infer": {
            "summary": "Inference by one named version: the champion, or a version in "
            "shadow whose promotion would need no approver.",
            **infer,
            "responses": {
                **responses,
                "409": {
                    "description": f"{duplicate}; "
                    "`approval_required`: the version is not the champion and its promotion "
                    "would wait for an approver (a regulated model, hyperparameters outside "
                    "the safe ranges), so it answers no client until it is promoted"
                },
            },
        },
        _records.MIRROR_PATH: {
            "summary": "Mirror: request + response records scored by the serving stack; "
            "recorded and shadowed. A record whose id is recorded already is a duplicate "
            "(same record) or a conflict, not stored again.",
            "requestBody": {"required": True, **_json(_mirror_request(max_items, max_rows))},
            "responses": {
                "200": _json(_MIRROR_RESPONSE, "OK"),
                "409": {
                    "description": "`version_required`: no version named, no champion; "
                    "`version_ambiguous`: neither `version` nor `scored_at` named, and the "
                    "champion changed within the grace (a new record only)"
                },
                "429": MIRROR_BUSY[429],
            },
        },
        _records.FEEDBACK_PATH: {
            "summary": "Labels, attached by request id; idempotent per request id.",
            "requestBody": {"required": True, **_json(_feedback_request(max_items))},
            "responses": {
                "200": _json(_FEEDBACK_RESPONSE, "each item's status"),
                "429": FEEDBACK_BUSY[429],
            },
        },
    }


_WEBHOOK = {
    "summary": "Alertmanager webhook (payload version 4; the alertmanager role): "
    "each firing alert naming a known model in the `alerting.model_label` label "
    "is one episode (`fingerprint` + `startsAt`) acted on once, whatever the "
    "redelivery. Alerts it cannot act on are ignored and listed, not refused.",
    "requestBody": {
        "required": True,
        **_json(
            {
                "type": "object",
                "required": ["alerts"],
                "properties": {"alerts": {"type": "array", "items": {"type": "object"}}},
                "additionalProperties": True,
            }
        ),
    },
    "responses": {
        "200": {
            "description": '`{"received": int, "new_episodes": int, "jobs": '
            '[job id], "ignored": [str], "busy": []}`'
        },
        "415": {"description": _ENCODING},
        "503": {
            "description": '`{"error": str, "code": str}`: `alert_busy` (an '
            "episode is held by another delivery that has not decided it; "
            "Alertmanager's retry takes it once the claim times out), "
            "`webhook_busy` (4 deliveries are being decided and 16 wait in this "
            "daemon; `Retry-After`), `shutting_down` (the daemon is stopping: the "
            "delivery was not decided, or not whole; `Retry-After`) or `store_unavailable`"
        },
    },
}

_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
_STOPPING = "`shutting_down` (the daemon is stopping: `server.shutdown_delay_s`)"
_NOT_READY = (
    "`model_not_ready` (no champion), `store_unavailable` (requests cannot be recorded) or "
    + _STOPPING
)
_PROBES: dict[str, dict[str, Any]] = {
    "/healthz": {
        "summary": "Liveness: the daemon's event loop answers",
        "responses": {"200": {"description": '`{"status": "ok"}`', **_OBJECT}},
    },
    "/readyz": {
        "summary": "Readiness: the store takes the daemon's records",
        "responses": {
            "200": {"description": '`{"status": "ok", "models": [model name]}`', **_OBJECT},
            "503": {"description": f"`store_unavailable` or {_STOPPING}"},
        },
    },
    "/v2": {"summary": "OIP v2 server metadata", "responses": {"200": {"description": "OK"}}},
    "/v2/health/live": {"summary": "OIP v2 liveness", "responses": {"200": {"description": "OK"}}},
    "/v2/health/ready": {
        "summary": "OIP v2 readiness: the store takes the daemon's records",
        "responses": {
            "200": {"description": "OK"},
            "503": {"description": f"`store_unavailable` or {_STOPPING}"},
        },
    },
    "/v2/models/{model}": {
        "summary": (
            "OIP v2 model metadata: the champion's signature, the versions in service that "
            "answer requests naming them"
        ),
        "responses": {"200": {"description": "OK"}},
    },
    "/v2/models/{model}/ready": {
        "summary": "OIP v2 model readiness: it has a champion and its requests can be recorded",
        "responses": {
            "200": {"description": "OK"},
            "404": {"description": "`model_not_found`"},
            "503": {"description": _NOT_READY},
        },
    },
    "/v2/models/{model}/versions/{version}": {
        "summary": "OIP v2 version metadata: its own signature",
        "responses": {"200": {"description": "OK"}},
    },
    "/v2/models/{model}/versions/{version}/ready": {
        "summary": (
            "OIP v2 version readiness: it is in service, answers requests naming it, and "
            "requests can be recorded"
        ),
        "responses": {
            "200": {"description": "OK"},
            "404": {"description": "`model_not_found` or `version_not_found` (not in service)"},
            "409": {
                "description": "`approval_required`: its promotion would wait for an approver, "
                "so it answers no requests naming it"
            },
            "503": {"description": f"`store_unavailable` or {_STOPPING}"},
        },
    },
}


def server_limits(app: FastAPI) -> dict[str, int]:
    """The configured limits the scoring routes' bodies are documented with."""
    server = app.state.ctx.runtime.config.server
    return {"max_items": server.max_items, "max_rows": server.max_batch_rows}


def openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's schema plus the hand-described Starlette routes, with
    every route's errors and token documented (:func:`_document_errors_and_tokens`) and
    its path parameters declared (:func:`_standard_parameters`)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        described = {
            **{path: ("post", op) for path, op in _scoring_routes(**server_limits(app)).items()},
            "/v1/alerts/alertmanager": ("post", _WEBHOOK),
            **{path: ("get", op) for path, op in _PROBES.items()},
        }
        for path, (method, operation) in described.items():
            # each its own copy: completed in place below, and operations share parts
            schema["paths"][path] = {method: copy.deepcopy(operation)}
        _standard_parameters(schema)
        _document_errors_and_tokens(schema)
        app.openapi_schema = schema
        return schema

    return openapi


#: pydantic's bounds of a parameter validated before its type (``BeforeValidator``), as
#: FastAPI emits them, and their JSON Schema keywords.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard_parameters(schema: dict[str, Any]) -> None:
    """Every ``{name}`` of a path declared as its path parameter (the hand-described
    routes declared none: schema validators refused them, and Schemathesis tested none
    of the 8), and parameter bounds in JSON Schema's keywords (37 came out as pydantic's
    ``ge``/``le``, which clients and validators ignore)."""
    for path, operations in schema["paths"].items():
        named = re.findall(r"\{(\w+)\}", path)
        for operation in operations.values():
            params = operation.setdefault("parameters", [])
            declared = {p["name"] for p in params if p.get("in") == "path"}
            for name in named:
                if name not in declared:
                    kind = "integer" if name == "version" else "string"
                    params.append(
                        {"name": name, "in": "path", "required": True, "schema": {"type": kind}}
                    )
            for param in params:
                top = param.get("schema", {})
                for part in (top, *top.get("anyOf", ())):
                    for ours, standard in _BOUNDS.items():
                        if ours in part:
                            part[standard] = part.pop(ours)
            if not params:
                del operation["parameters"]
