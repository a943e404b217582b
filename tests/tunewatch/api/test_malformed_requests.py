"""Every malformed request gets its documented 4xx with ``{"error", "code"}`` — never a 500."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from tests.tunewatch.conftest import Running
from tunewatch._example import ExampleModel
from tunewatch._tuning_results import study_name

INFER = "/v2/models/credit/infer"
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
BIG = 2**31  # one past PostgreSQL's INTEGER, the type of every id and version column


def infer_body(
    data: Any = None,
    *,
    shape: Any = (1, 8),
    datatype: str = "FP32",
    name: str = "input",
    **extra: Any,
) -> dict[str, Any]:
    tensor = {
        "name": name,
        "shape": list(shape),
        "datatype": datatype,
        "data": ROW if data is None else data,
    }
    return {"inputs": [tensor], **extra}


@dataclass(frozen=True)
class Case:
    status: int
    code: str
    path: str = INFER
    body: Any = None  # dict → JSON; bytes → raw
    role: str | None = "scorer"
    method: str = "POST"
    headers: dict[str, Any] = field(default_factory=dict)
    chunked: bool = False  # sent without Content-Length, in chunks


def _raw(text: str) -> bytes:
    return text.encode()


BINARY_HEAD = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 8],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 32},
            }
        ]
    }
).encode()


def _empty_binary_head(shape: list[int]) -> bytes:
    """A binary request of no bytes whose ``shape`` holds no value (numpy's reshape of
    it failed as 'array is too big': a 500)."""
    tensor = {
        "name": "input",
        "shape": shape,
        "datatype": "FP32",
        "parameters": {"binary_data_size": 0},
    }
    return json.dumps({"inputs": [tensor]}).encode()


def _npz_bomb() -> bytes:
    """A 200-byte .npz whose one array declares 10**13 float32 values (36 TiB)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("features.npy", header.getvalue() + b"\0" * 64)
    return out.getvalue()


def _npz_corrupt_deflate() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=np.zeros((5, 8), np.float32))
    data = bytearray(buffer.getvalue())
    at = data.find(b"PK\x03\x04")
    start = at + 30 + int.from_bytes(data[at + 26 : at + 28], "little")
    start += int.from_bytes(data[at + 28 : at + 30], "little")
    for k in range(start, start + 6):
        data[k] ^= 0xFF
    return bytes(data)


def _npz_corrupt_lzma() -> bytes:
    array = io.BytesIO()
    np.lib.format.write_array(array, np.zeros((50, 8), np.float32))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("features.npy", array.getvalue())
    data = bytearray(out.getvalue())
    start = 30 + len("features.npy") + 9  # past the local header and LZMA's properties
    for k in range(start, start + 8):
        data[k] ^= 0x5A
    return bytes(data)


def _npz_of(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _register_with(reference: bytes) -> Case:
    return Case(
        400,
        "invalid_reference",
        path="/v1/models/credit/versions",
        role="operator",
        body={
            "onnx_base64": "",
            "task": "binary",
            "feature_names": ["a"],
            "reference_npz_base64": base64.b64encode(reference).decode(),
        },
    )


CASES: dict[str, Case] = {
    "nan_literal": Case(
        400, "invalid_json", body=_raw(json.dumps(infer_body()).replace("0.1", "NaN"))
    ),
    "infinity_literal": Case(
        400, "invalid_json", body=_raw(json.dumps(infer_body()).replace("0.1", "-Infinity"))
    ),
    "number_overflowing_to_infinity": Case(
        400, "non_finite", body=_raw(json.dumps(infer_body()).replace("0.1", "1e400"))
    ),
    "float64_beyond_float32_range": Case(400, "out_of_range", body=infer_body([1e39] + ROW[1:])),
    "feature_outside_configured_range": Case(
        400, "out_of_range", body=infer_body([50.0] + ROW[1:])
    ),
    "wrong_feature_count": Case(400, "shape_mismatch", body=infer_body(ROW[:7], shape=(1, 7))),
    "wrong_rank": Case(400, "shape_mismatch", body=infer_body(ROW, shape=(8,))),
    "data_length_not_matching_shape": Case(400, "shape_mismatch", body=infer_body(ROW[:7])),
    "negative_dimension": Case(400, "shape_mismatch", body=infer_body(shape=(-1, 8))),
    "ragged_nested_data": Case(400, "shape_mismatch", body=infer_body([[1.0, 2.0], [1.0]])),
    "shape_with_65_dimensions": Case(400, "shape_mismatch", body=infer_body([0.5], shape=[1] * 65)),
    "wrong_datatype": Case(400, "dtype_mismatch", body=infer_body(datatype="FP64")),
    "string_values": Case(400, "dtype_mismatch", body=infer_body(["1.5"] * 8)),
    "boolean_values": Case(400, "dtype_mismatch", body=infer_body([True] * 8)),
    "booleans_among_numbers": Case(
        400, "dtype_mismatch", body=infer_body([[True, False, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]])
    ),
    "null_values": Case(400, "dtype_mismatch", body=infer_body([None] * 8)),
    "duplicate_keys": Case(
        400, "duplicate_key", body=_raw('{"inputs": [], "inputs": [{"name": "input"}]}')
    ),
    "duplicate_keys_nested": Case(
        400,
        "duplicate_key",
        body=_raw(json.dumps(infer_body()).replace('"name"', '"name": "x", "name"')),
    ),
    "duplicate_keys_spelled_with_an_escape": Case(
        400, "duplicate_key", body=_raw(json.dumps(infer_body())[:-1] + ', "\\u0069nputs": []}')
    ),
    "integer_with_5000_digits": Case(
        400, "invalid_json", body=_raw(json.dumps(infer_body(id="x")).replace('"x"', "1" * 5000))
    ),
    "oversize_body": Case(
        413, "body_too_large", body=infer_body([0.0] * 8 * 10_000, shape=(10_000, 8))
    ),
    "empty_batch": Case(400, "empty_batch", body=infer_body([], shape=(0, 8))),
    "batch_over_the_row_limit": Case(
        413, "batch_too_large", body=infer_body(ROW * 65, shape=(65, 8))
    ),
    "not_json": Case(400, "invalid_json", body=b"inputs=1"),
    "empty_body": Case(400, "invalid_json", body=b""),
    "invalid_utf8": Case(400, "invalid_json", body=b'{"inputs": "\xff\xfe"}'),
    "lone_surrogate_in_the_id": Case(
        400, "invalid_json", body=_raw(json.dumps(infer_body(id="\udfff")))
    ),
    "deeply_nested_json": Case(400, "invalid_json", body=b"[" * 30_000 + b"]" * 30_000),
    "top_level_array": Case(400, "invalid_request", body=[infer_body()]),
    "missing_inputs": Case(400, "missing_input", body={"id": "x"}),
    "unknown_input_name": Case(400, "unknown_input", body=infer_body(name="features")),
    "two_inputs": Case(400, "unknown_input", body={"inputs": infer_body()["inputs"] * 2}),
    "unknown_output": Case(400, "unknown_output", body=infer_body(outputs=[{"name": "logits"}])),
    "non_string_id": Case(400, "invalid_id", body=infer_body(id=12)),
    "binary_header_longer_than_body": Case(
        400,
        "invalid_binary",
        body=BINARY_HEAD,
        headers={"Inference-Header-Content-Length": str(len(BINARY_HEAD) + 10)},
    ),
    "binary_header_length_a_superscript_digit": Case(
        400,
        "invalid_binary",
        body=BINARY_HEAD,
        headers={"Inference-Header-Content-Length": b"\xb2"},  # latin-1 "²": isdigit(), not int
    ),
    "version_a_superscript_digit": Case(
        404, "version_not_found", path="/v2/models/credit/versions/%C2%B2/infer"
    ),
    "mirror_version_beyond_the_store_s_integers": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/records",
        body={
            "records": [{"id": "m-big", "inputs": [ROW], "outputs": [[0.5, 0.5]], "version": 2**63}]
        },
    ),
    # the mirror read `true` among numbers as 1, where inference refuses it
    "mirror_booleans_among_inputs": Case(
        400,
        "dtype_mismatch",
        path="/v1/models/credit/records",
        body={
            "records": [{"id": "m-bool-in", "inputs": [[True, *ROW[1:]]], "outputs": [[0.5, 0.5]]}]
        },
    ),
    "mirror_booleans_among_outputs": Case(
        400,
        "dtype_mismatch",
        path="/v1/models/credit/records",
        body={"records": [{"id": "m-bool-out", "inputs": [ROW], "outputs": [[0.5, True]]}]},
    ),
    # logits mirrored for a classifier were stored as its probabilities
    "mirror_classifier_output_below_0": Case(
        400,
        "invalid_output",
        path="/v1/models/credit/records",
        body={"records": [{"id": "m-logit-lo", "inputs": [ROW], "outputs": [[-0.5, 1.5]]}]},
    ),
    "mirror_classifier_output_above_1": Case(
        400,
        "invalid_output",
        path="/v1/models/credit/records",
        body={"records": [{"id": "m-logit-hi", "inputs": [ROW], "outputs": [[0.5, 1.01]]}]},
    ),
    **{
        f"empty_data_shaped_{name}{suffix}": Case(
            400,
            "shape_mismatch",
            body=infer_body([], shape=shape) if binary is None else binary,
            headers={} if binary is None else {"Inference-Header-Content-Length": str(len(binary))},
        )
        for name, shape in (
            ("0_by_2_62", [0, 2**62]),
            ("0_by_2_63_minus_1", [0, 2**63 - 1]),
            ("2_62_by_0", [2**62, 0]),
        )
        for suffix, binary in (("", None), ("_binary", _empty_binary_head(shape)))
    },
    "binary_size_not_matching_shape": Case(
        400,
        "invalid_binary",
        body=BINARY_HEAD + b"\x00" * 16,
        headers={"Inference-Header-Content-Length": str(len(BINARY_HEAD))},
    ),
    "binary_header_not_a_number": Case(
        400, "invalid_binary", body=BINARY_HEAD, headers={"Inference-Header-Content-Length": "abc"}
    ),
    "unknown_model": Case(404, "model_not_found", path="/v2/models/nope/infer", body=infer_body()),
    "unknown_version": Case(
        404, "version_not_found", path="/v2/models/credit/versions/99/infer", body=infer_body()
    ),
    "non_numeric_version": Case(
        404, "version_not_found", path="/v2/models/credit/versions/x/infer", body=infer_body()
    ),
    "no_token": Case(401, "unauthenticated", body=infer_body(), role=None),
    "unknown_token": Case(
        401,
        "invalid_token",
        body=infer_body(),
        role=None,
        headers={"Authorization": "Bearer tw_not_a_token"},
    ),
    "non_ascii_token": Case(
        401,
        "invalid_token",
        body=infer_body(),
        role=None,
        headers={"Authorization": "Bearer tw_tökén".encode()},
    ),
    "basic_auth_scheme": Case(
        401,
        "unauthenticated",
        body=infer_body(),
        role=None,
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
    ),
    "labeller_cannot_score": Case(403, "forbidden", body=infer_body(), role="labeller"),
    "viewer_cannot_label": Case(
        403,
        "forbidden",
        path="/v1/models/credit/feedback",
        body={"items": [{"request_id": "a", "label": 1}]},
        role="viewer",
    ),
    "scorer_cannot_register": Case(
        403, "forbidden", path="/v1/models/credit/versions", body={}, role="scorer"
    ),
    # The permission is checked before the body is read or parsed: a viewer could make the
    # daemon read and parse up to the artefact limit.
    "viewer_cannot_register_even_a_body_that_is_not_json": Case(
        403,
        "forbidden",
        path="/v1/models/credit/versions",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
        role="viewer",
    ),
    "oversize_chunked_text_body_to_a_management_route": Case(
        413,
        "body_too_large",
        path="/v1/models/credit/retune",
        body=b"x" * (2 * 65536),  # the fixture's max_body_bytes is 65536
        headers={"Content-Type": "text/plain"},
        role="operator",
        chunked=True,
    ),
    "oversize_chunked_body_without_content_type": Case(
        413,
        "body_too_large",
        path="/v1/models/credit/versions/1/promote",
        body=b"x" * (2 * 65536),  # the fixture's max_body_bytes is 65536
        role="operator",
        chunked=True,
    ),
    "feedback_label_not_a_number": Case(
        400,
        "invalid_label",
        path="/v1/models/credit/feedback",
        body={"items": [{"request_id": "a", "label": "yes"}]},
        role="labeller",
    ),
    "feedback_binary_label_not_0_or_1": Case(
        400,
        "invalid_label",
        path="/v1/models/credit/feedback",
        body={"items": [{"request_id": "a", "label": 2}]},
        role="labeller",
    ),
    "feedback_binary_label_fractional_in_a_list": Case(
        400,
        "invalid_label",
        path="/v1/models/credit/feedback",
        body={"items": [{"request_id": "a", "label": [1, 0.5]}]},
        role="labeller",
    ),
    "feedback_unknown_field": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/feedback",
        body={"items": [{"request_id": "a", "label": 1, "x": 2}]},
        role="labeller",
    ),
    "feedback_without_items": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/feedback",
        body={"labels": []},
        role="labeller",
    ),
    "mirror_outputs_not_matching_rows": Case(
        400,
        "shape_mismatch",
        path="/v1/models/credit/records",
        body={"records": [{"id": "m1", "inputs": [ROW], "outputs": [[0.1, 0.9], [0.2, 0.8]]}]},
    ),
    "register_invalid_base64": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/versions",
        role="operator",
        body={"onnx_base64": "***", "task": "binary", "feature_names": ["a"]},
    ),
    "register_not_an_onnx_file": Case(
        400,
        "not_onnx",
        path="/v1/models/credit/versions",
        role="operator",
        body={
            "onnx_base64": base64.b64encode(b"not a model").decode(),
            "task": "binary",
            "feature_names": [f"x{i}" for i in range(8)],
        },
    ),
    "register_parent_version_beyond_the_store_s_integers": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/versions",
        role="operator",
        body={
            "onnx_base64": "",
            "task": "binary",
            "feature_names": ["a"],
            "parent_version": BIG,
        },
    ),
    "management_body_with_a_nan_literal": Case(
        400,
        "invalid_json",
        role="operator",
        path="/v1/models/credit/versions/2/promote",
        body=b'{"reason": NaN}',
        headers={"Content-Type": "application/json"},
    ),
    # Without a Content-Type the body is JSON, read by the same strict parser.
    "management_body_with_a_nan_literal_and_no_content_type": Case(
        400,
        "invalid_json",
        role="operator",
        path="/v1/models/credit/versions/2/promote",
        body=b'{"reason": NaN}',
    ),
    # `curl -d` sends a form's Content-Type: it was read as no body at all ("Input
    # should be a valid dictionary"), a message that did not name the header.
    "management_json_body_sent_as_a_form": Case(
        415,
        "unsupported_media_type",
        role="operator",
        path="/v1/models/credit/versions/2/promote",
        body=b'{"reason": "r"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # feedback and mirror records took a form's Content-Type with 200, unlike the others
    "feedback_sent_as_a_form": Case(
        415,
        "unsupported_media_type",
        role="labeller",
        path="/v1/models/credit/feedback",
        body=b'{"items": [{"request_id": "form-1", "label": 1}]}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "mirror_records_sent_as_a_form": Case(
        415,
        "unsupported_media_type",
        path="/v1/models/credit/records",
        body=json.dumps(
            {"records": [{"id": "form-1", "inputs": [ROW], "outputs": [[0.5, 0.5]]}]}
        ).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "management_body_with_duplicate_keys": Case(
        400,
        "duplicate_key",
        role="operator",
        path="/v1/models/credit/versions/2/promote",
        body=b'{"reason": "a", "reason": "b"}',
        headers={"Content-Type": "application/json"},
    ),
    "registration_body_without_a_token_is_not_read": Case(
        401,
        "unauthenticated",
        role=None,
        path="/v1/models/credit/versions",
        body=b"{" * 1000,
        headers={"Content-Type": "application/json"},
    ),
    "register_with_a_corrupt_deflate_reference": _register_with(_npz_corrupt_deflate()),
    "register_with_a_corrupt_lzma_reference": _register_with(_npz_corrupt_lzma()),
    "register_with_a_reference_format_version_not_a_scalar": _register_with(
        _npz_of(format_version=np.array([1, 2]), features=np.zeros((5, 1), np.float32))
    ),
    "register_with_an_infinite_reference_format_version": _register_with(
        _npz_of(format_version=np.array(np.inf), features=np.zeros((5, 1), np.float32))
    ),
    "register_with_a_text_reference": _register_with(
        _npz_of(features=np.array([["a"]]), labels=np.array([1.0]))
    ),
    "register_with_a_reference_declaring_terabytes": Case(
        400,
        "invalid_reference",
        path="/v1/models/credit/versions",
        role="operator",
        body={
            "onnx_base64": "",
            "task": "binary",
            "feature_names": ["a"],
            "reference_npz_base64": base64.b64encode(_npz_bomb()).decode(),
        },
    ),
    "register_missing_fields": Case(
        400,
        "invalid_request",
        path="/v1/models/credit/versions",
        role="operator",
        body={"task": "binary"},
    ),
    "promote_unknown_version": Case(
        404,
        "version_not_found",
        role="operator",
        path="/v1/models/credit/versions/99/promote",
        body={"reason": "x"},
    ),
    "promote_without_reason": Case(
        400,
        "invalid_request",
        role="operator",
        path="/v1/models/credit/versions/2/promote",
        body={},
    ),
    **{
        f"id_beyond_the_store_s_integers_{i}": Case(
            400, "invalid_request", method=method, path=path.format(BIG), body=body, role=role
        )
        for i, (method, path, body, role) in enumerate(
            [
                ("GET", "/v1/jobs/{}", None, "viewer"),
                ("GET", "/v1/models/credit/versions/{}", None, "viewer"),
                ("GET", "/v1/models/credit/versions/{}/report", None, "viewer"),
                ("POST", "/v1/models/credit/versions/{}/promote", {"reason": "x"}, "operator"),
                ("POST", "/v1/models/credit/versions/{}/retire", {"reason": "x"}, "operator"),
                ("POST", "/v1/approvals/{}/approve", {"reason": "x"}, "approver"),
                ("POST", "/v1/approvals/{}/reject", {"reason": "x"}, "approver"),
                ("GET", "/v1/models/credit/comparisons/{}/history", None, "viewer"),
                ("GET", "/v1/models/credit/evaluations/{}/report", None, "viewer"),
                ("GET", "/v1/models/credit/evaluations?version={}", None, "viewer"),
                ("GET", "/v1/models/credit/drift?version={}", None, "viewer"),
            ]
        )
    },
    "job_id_with_25_digits": Case(
        400, "invalid_request", method="GET", path="/v1/jobs/" + "9" * 25, role="viewer"
    ),
    "get_on_infer": Case(405, "method_not_allowed", method="GET", body=None),
    "unknown_route": Case(404, "not_found", path="/v2/nothing/here", method="GET"),
    # int() refuses strings past 4,300 digits: these were 500s
    "version_with_5000_digits": Case(
        404, "version_not_found", path="/v2/models/credit/versions/" + "1" * 5000 + "/infer"
    ),
    "ready_of_a_version_with_5000_digits": Case(
        404,
        "version_not_found",
        path="/v2/models/credit/versions/" + "1" * 5000 + "/ready",
        method="GET",
    ),
    "binary_header_length_with_5000_digits": Case(
        400,
        "invalid_binary",
        body=BINARY_HEAD,
        headers={"Inference-Header-Content-Length": "1" * 5000},
    ),
    # Content-Encoding: gzip and deflate bodies are read decompressed (tritonclient's
    # request_compression_algorithm); they were parsed as raw bytes
    "infer_with_an_unknown_content_encoding": Case(
        415,
        "unsupported_content_encoding",
        body=json.dumps(infer_body()).encode(),
        headers={"Content-Encoding": "br"},
    ),
    "feedback_with_an_unknown_content_encoding": Case(
        415,
        "unsupported_content_encoding",
        role="labeller",
        path="/v1/models/credit/feedback",
        body=json.dumps({"items": [{"request_id": "br-1", "label": 1}]}).encode(),
        headers={"Content-Encoding": "br", "Content-Type": "application/json"},
    ),
    "infer_with_a_corrupt_gzip_body": Case(
        400,
        "invalid_encoding",
        body=gzip.compress(json.dumps(infer_body()).encode())[:-12] + b"\x00" * 12,
        headers={"Content-Encoding": "gzip"},
    ),
    "infer_with_a_truncated_deflate_body": Case(
        400,
        "invalid_encoding",
        body=zlib.compress(json.dumps(infer_body()).encode())[:20],
        headers={"Content-Encoding": "deflate"},
    ),
    "mirror_records_with_a_plain_body_declared_gzip": Case(
        400,
        "invalid_encoding",
        path="/v1/models/credit/records",
        body=json.dumps(
            {"records": [{"id": "gz-1", "inputs": [ROW], "outputs": [[0.5, 0.5]]}]}
        ).encode(),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    ),
    # a small compressed body past the limit once decompressed (65,536 bytes in tests)
    "infer_with_a_gzip_bomb": Case(
        413,
        "body_too_large",
        body=gzip.compress(b" " * 70_000 + json.dumps(infer_body()).encode()),
        headers={"Content-Encoding": "gzip"},
    ),
    "feedback_with_a_deflate_bomb": Case(
        413,
        "body_too_large",
        role="labeller",
        path="/v1/models/credit/feedback",
        body=zlib.compress(
            json.dumps({"items": [{"request_id": "x" * 70_000, "label": 1}]}).encode()
        ),
        headers={"Content-Encoding": "deflate", "Content-Type": "application/json"},
    ),
    "ready_of_an_unknown_version": Case(
        404, "version_not_found", path="/v2/models/credit/versions/999/ready", method="GET"
    ),
}


@pytest.fixture(scope="module")
def client(running: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_malformed_request_gets_documented_4xx(
    case: Case, running: Running, client: httpx.Client
) -> None:
    _check(case, running, client)


def _check(case: Case, running: Running, client: httpx.Client) -> None:
    headers: dict[str, Any] = dict(case.headers)
    if case.role is not None:
        headers.update(running.auth(case.role))
    if isinstance(case.body, bytes) and case.chunked:
        size = 16384
        content = (case.body[i : i + size] for i in range(0, len(case.body), size))
    elif isinstance(case.body, bytes):
        content = case.body
    elif case.body is None:
        content = None
    else:
        content = json.dumps(case.body).encode()
        headers.setdefault("Content-Type", "application/json")
    r = client.request(case.method, case.path, content=content, headers=headers)
    assert r.status_code == case.status, r.text
    body = r.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == case.code
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text


def test_a_registration_nested_too_deeply_is_a_400_and_writes_nothing(
    running: Running, client: httpx.Client, trained: list[ExampleModel]
) -> None:
    """Details nested 300 levels were committed, then answered 500 (a retry registered
    the version again), and the model's version list answered 500 from then on."""
    details: Any = 1
    for _ in range(300):
        details = {"a": details}
    body = {
        "onnx_base64": base64.b64encode(trained[0].onnx).decode(),
        "task": "binary",
        "feature_names": list(trained[0].metadata.feature_names),
        "details": details,
    }
    r = client.post(
        "/v1/models/deep/versions",
        content=json.dumps(body).encode(),
        headers=running.auth("operator") | {"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request" and "`details`" in r.json()["error"]
    assert client.get("/v1/models/deep", headers=running.auth("viewer")).status_code == 404


def test_a_registration_cannot_take_a_tuning_job_s_study_name(
    running: Running, client: httpx.Client, trained: list[ExampleModel]
) -> None:
    """Study names number a model's jobs (`credit-job7`) and a study registers once: a
    version registered by hand with job 7's study made job 7's worker find its study
    registered, and the launcher finished job 7 as succeeded with the hand-made version."""
    store = running.daemon.store
    job, _ = store.create_job(model="credit", kind="retune", trigger={"event": "manual"}, spec={})
    study = f"credit-job{job.id}"
    body = {
        "onnx_base64": base64.b64encode(trained[0].onnx).decode(),
        "task": "binary",
        "feature_names": list(trained[0].metadata.feature_names),
    }
    headers = running.auth("operator")
    before = len(store.list_versions("credit"))
    r = client.post("/v1/models/credit/versions", json={**body, "study": study}, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert "`study`" in r.json()["error"] and "`credit-job<number>`" in r.json()["error"]
    # the name a job queued now tunes under, with its random part, is reserved too
    named = study_name(job)
    assert named.startswith(f"credit-job{job.id}-")
    r = client.post("/v1/models/credit/versions", json={**body, "study": named}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    assert len(store.list_versions("credit")) == before
    # the job's own registration (its worker's path) is what takes the name
    row = running.daemon.registry.register(
        "credit",
        trained[0].onnx,
        dataclasses.replace(trained[0].metadata, study=study),
        actor=f"job:{job.id}",
        once_per_study=True,
    )
    assert row.study == study
    # any other study name is the caller's to record
    other = client.post(
        "/v1/models/credit/versions", json={**body, "study": "optuna-credit-2024"}, headers=headers
    )
    assert other.status_code == 201 and other.json()["study"] == "optuna-credit-2024", other.text


def test_malformed_requests_are_many_and_no_500_was_ever_answered(
    running: Running, client: httpx.Client
) -> None:
    assert len(CASES) >= 25
    # errors by code, from the inference front and from the rest of the API alike: sent
    # here too, since the parametrised cases may run in another worker (pytest-xdist)
    codes = {
        "wrong_feature_count": "shape_mismatch",
        "duplicate_keys": "duplicate_key",
        "labeller_cannot_score": "forbidden",
        "oversize_body": "body_too_large",
        "unknown_route": "not_found",
    }
    for name in codes:
        _check(CASES[name], running, client)
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics
    registry = running.daemon.metrics.registry
    for code in codes.values():
        count = registry.get_sample_value("tunewatch_http_errors_total", {"code": code})
        assert count is not None and count >= 1, code


def test_a_management_body_without_a_content_type_is_read_as_json(
    running: Running, client: httpx.Client
) -> None:
    r = client.post(
        "/v1/models/credit/versions/999/promote",
        content=b'{"reason": "no header"}',
        headers=running.auth("operator"),
    )
    assert r.status_code == 404 and r.json()["code"] == "version_not_found", r.text


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
def test_compressed_management_bodies_are_read_decompressed(
    encoding: str, running: Running, client: httpx.Client
) -> None:
    body = json.dumps({"items": [{"request_id": f"never-seen-{encoding}", "label": 1}]}).encode()
    content = {"gzip": gzip.compress, "deflate": zlib.compress}.get(encoding, bytes)(body)
    r = client.post(
        "/v1/models/credit/feedback",
        content=content,
        headers=running.auth("labeller")
        | {"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [
        {"request_id": f"never-seen-{encoding}", "status": "unknown_request"}
    ]
