"""Limits at their edges and inputs on the wrong side of a rule: a body, a decompressed
body, an id or a list exactly at its limit is taken and one more is refused with the
documented code; a boolean among numbers, a label or outcome that is not a number, a
repeated id and version 0 are refused; content codings are read as RFC 9110 says."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

LIMIT = 65536  # the daemon's `server.max_body_bytes`
MAX_ITEMS = 4  # its `server.max_items`
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
INFER = f"/v2/models/{MODEL}/infer"
RECORDS = f"/v1/models/{MODEL}/records"
FEEDBACK = f"/v1/models/{MODEL}/feedback"


@pytest.fixture(scope="module")
def bounded(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The example daemon with a 64 KiB body limit and at most four feedback items."""
    data: Path = tmp_path_factory.mktemp("bounded")
    daemon, tokens = make_daemon(
        data,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "server": {"max_body_bytes": LIMIT, "max_batch_rows": 64, "max_items": MAX_ITEMS},
        },
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def infer_body(request_id: str, data: list[Any] | None = None) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": data or ROW}
    return {"id": request_id, "inputs": [tensor]}


def padded(obj: dict[str, Any], size: int) -> bytes:
    """``obj`` as JSON of exactly ``size`` bytes: spaces before its closing brace."""
    raw = json.dumps(obj).encode()
    assert len(raw) <= size
    return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]


def post(
    running: Running,
    path: str,
    role: str,
    *,
    json_body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{running.url}{path}",
        json=json_body,
        content=content,
        headers=running.auth(role) | (headers or {}),
    )


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.json()["code"]) == (status, code), r.text


def scored(r: httpx.Response, request_id: str) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["id"] == request_id


# --- body limits -------------------------------------------------------------------


def test_a_management_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(
    bounded: Running,
) -> None:
    body = {"items": [{"request_id": "never-scored", "label": 1}]}
    r = post(bounded, FEEDBACK, "labeller", content=padded(body, LIMIT))
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"request_id": "never-scored", "status": "unknown_request"}]
    refused(
        post(bounded, FEEDBACK, "labeller", content=padded(body, LIMIT + 1)), 413, "body_too_large"
    )


def test_an_inference_body_of_exactly_the_limit_is_scored_and_one_byte_more_is_413(
    bounded: Running,
) -> None:
    scored(
        post(bounded, INFER, "scorer", content=padded(infer_body("at-limit"), LIMIT)), "at-limit"
    )
    r = post(bounded, INFER, "scorer", content=padded(infer_body("past-limit"), LIMIT + 1))
    refused(r, 413, "body_too_large")


def test_a_gzip_body_inflating_to_exactly_the_limit_is_scored_and_one_byte_more_is_413(
    bounded: Running,
) -> None:
    gz = {"Content-Encoding": "gzip"}
    body = gzip.compress(padded(infer_body("gz-at-limit"), LIMIT))
    scored(post(bounded, INFER, "scorer", content=body, headers=gz), "gz-at-limit")
    body = gzip.compress(padded(infer_body("gz-past-limit"), LIMIT + 1))
    refused(post(bounded, INFER, "scorer", content=body, headers=gz), 413, "body_too_large")


def test_a_registration_over_the_body_limit_is_read_under_the_artefact_limit(
    bounded: Running,
) -> None:
    """Uploads to ``.../versions`` get `server.max_artefact_bytes`: this one (not an ONNX
    file) is read and refused for what it holds, not for its size."""
    registration = {
        "onnx_base64": base64.b64encode(b"\0" * 60_000).decode(),
        "task": "binary",
        "feature_names": [f"x{i}" for i in range(8)],
        "stage": "shadow",
    }
    content = json.dumps(registration).encode()
    assert len(content) > LIMIT
    r = post(bounded, f"/v1/models/{MODEL}/versions", "operator", content=content)
    refused(r, 400, "not_onnx")


def test_content_encoding_names_are_case_insensitive(bounded: Running) -> None:
    for coding in ("GZIP", "Gzip"):
        request_id = f"coding-{coding}"
        body = gzip.compress(json.dumps(infer_body(request_id)).encode())
        r = post(bounded, INFER, "scorer", content=body, headers={"Content-Encoding": coding})
        scored(r, request_id)


def test_a_gzip_body_of_two_members_is_read_whole(bounded: Running) -> None:
    raw = json.dumps(infer_body("two-members")).encode()
    body = gzip.compress(raw[:20]) + gzip.compress(raw[20:])
    r = post(bounded, INFER, "scorer", content=body, headers={"Content-Encoding": "gzip"})
    scored(r, "two-members")


# --- inference ---------------------------------------------------------------------


def test_an_id_of_128_characters_is_taken_and_129_is_invalid_id(bounded: Running) -> None:
    scored(post(bounded, INFER, "scorer", json_body=infer_body("i" * 128)), "i" * 128)
    refused(post(bounded, INFER, "scorer", json_body=infer_body("j" * 129)), 400, "invalid_id")


def test_false_among_the_numbers_is_dtype_mismatch(bounded: Running) -> None:
    """numpy reads ``false`` as 0; the body spells no ``true`` for the check to key on."""
    r = post(bounded, INFER, "scorer", json_body=infer_body("has-false", [False, *ROW[1:]]))
    refused(r, 400, "dtype_mismatch")


def test_a_binary_header_length_of_zero_is_invalid_binary(bounded: Running) -> None:
    r = post(
        bounded,
        INFER,
        "scorer",
        content=b"{}" + b"\0" * 32,
        headers={"Inference-Header-Content-Length": "0"},
    )
    refused(r, 400, "invalid_binary")


# --- mirror records and feedback ---------------------------------------------------


def _record(request_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": request_id, "inputs": [ROW], "outputs": [[0.3, 0.7]], **extra}


def test_a_mirror_batch_repeating_an_id_is_refused_whole(bounded: Running) -> None:
    body = {"records": [_record("twice"), _record("twice")]}
    refused(post(bounded, RECORDS, "scorer", json_body=body), 400, "duplicate_request_id")
    assert bounded.daemon.store.get_request(MODEL, "twice") is None


def test_a_mirror_record_of_version_0_is_invalid_request(bounded: Running) -> None:
    body = {"records": [_record("version-0", version=0)]}
    r = post(bounded, RECORDS, "scorer", json_body=body)
    refused(r, 400, "invalid_request")
    assert "version must be an integer in 1.." in r.json()["error"]


def test_feedback_of_exactly_max_items_is_taken_and_one_more_is_too_many_items(
    bounded: Running,
) -> None:
    def items(n: int) -> dict[str, Any]:
        return {"items": [{"request_id": f"none-{i}", "label": 1} for i in range(n)]}

    r = post(bounded, FEEDBACK, "labeller", json_body=items(MAX_ITEMS))
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == MAX_ITEMS
    refused(
        post(bounded, FEEDBACK, "labeller", json_body=items(MAX_ITEMS + 1)), 413, "too_many_items"
    )


@pytest.mark.parametrize(
    ("request_id", "item"),
    [
        pytest.param("label-true", {"label": True}, id="label-true"),
        pytest.param("outcome-high", {"label": 1, "outcome": "high"}, id="outcome-string"),
    ],
)
def test_a_label_or_outcome_that_is_not_a_number_is_invalid_label(
    bounded: Running, request_id: str, item: dict[str, Any]
) -> None:
    """Of a scored request, so the label would be stored were it taken."""
    scored(post(bounded, INFER, "scorer", json_body=infer_body(request_id)), request_id)
    body = {"items": [{"request_id": request_id, **item}]}
    refused(post(bounded, FEEDBACK, "labeller", json_body=body), 400, "invalid_label")
    assert bounded.daemon.store.get_label(MODEL, request_id) is None


# --- Alertmanager ------------------------------------------------------------------


def test_an_alert_without_its_own_status_takes_its_groups_firing(bounded: Running) -> None:
    """Alertmanager's ``status`` is on each alert and on the group; an alert without one
    is as its group says."""
    label = bounded.daemon.runtime.config.alerting.model_label
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "retune",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "labels": {"alertname": "TunewatchDriftHigh", label: MODEL},
                "annotations": {},
                "startsAt": "2026-12-01T10:00:00Z",
                "fingerprint": "no-own-status",
            }
        ],
    }
    r = post(bounded, "/v1/alerts/alertmanager", "alertmanager", json_body=body)
    assert r.status_code == 200, r.text
    assert (r.json()["new_episodes"], r.json()["ignored"]) == (1, [])
