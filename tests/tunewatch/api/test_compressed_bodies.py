"""Compressed request bodies cost an inflation only a caller allowed to send them gets:
a gzip or deflate body is inflated after the route's permission check, a gzip body of
more than 16 members is refused, and only the registration route reads bodies under the
artefact limit."""

from __future__ import annotations

import base64
import gzip
import json
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel, example_data
from tunewatch.api._body import decompress
from tunewatch.api._errors import ApiError

LIMIT = 65536  # the daemon's `server.max_body_bytes`
ARTEFACT_LIMIT = 262144  # its `server.max_artefact_bytes`
GZIP = 16 + zlib.MAX_WBITS
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
INFER = f"/v2/models/{MODEL}/infer"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
RECORDS = f"/v1/models/{MODEL}/records"
VERSIONS = f"/v1/models/{MODEL}/versions"
ALERTS = "/v1/alerts/alertmanager"


@pytest.fixture(scope="module")
def small(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The example daemon with a 64 KiB body limit and a 256 KiB artefact limit."""
    data: Path = tmp_path_factory.mktemp("compressed")
    daemon, tokens = make_daemon(
        data,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "server": {
                "max_body_bytes": LIMIT,
                "max_artefact_bytes": ARTEFACT_LIMIT,
                "max_batch_rows": 64,
            },
        },
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def infer_body(request_id: str) -> bytes:
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}
    return json.dumps({"id": request_id, "inputs": [tensor]}).encode()


def members(raw: bytes, count: int) -> bytes:
    """``raw`` gzipped as ``count`` members, one after another."""
    step = -(-len(raw) // count)
    pieces = [raw[i * step : (i + 1) * step] for i in range(count)]
    return b"".join(gzip.compress(piece) for piece in pieces)


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert set(r.json()) == {"error", "code"}


# --- decompress ------------------------------------------------------------------------


def test_decompress_reads_sixteen_gzip_members_and_refuses_a_seventeenth() -> None:
    raw = b"sixteen members at most; tritonclient sends one"
    assert decompress(members(raw, 16), GZIP, LIMIT) == raw
    with pytest.raises(ApiError) as caught:
        decompress(members(raw, 17), GZIP, LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "invalid_encoding")
    assert "gzip member 16" in str(caught.value)


def test_decompress_refuses_a_body_of_many_empty_gzip_members() -> None:
    """A body of 20-byte empty members cost time growing with its size squared: each
    member copied the rest of the body."""
    body = gzip.compress(b"") * (LIMIT // 20)
    with pytest.raises(ApiError) as caught:
        decompress(body, GZIP, LIMIT)
    assert caught.value.code == "invalid_encoding"


def test_decompress_reads_members_straddling_its_reads() -> None:
    rng = random.Random(7)
    raw = rng.randbytes(200_000)  # incompressible: the members are larger than a read
    body = members(raw, 3)
    assert len(body) > 3 * 65536
    assert decompress(body, GZIP, len(raw)) == raw
    with pytest.raises(ApiError) as caught:
        decompress(body, GZIP, len(raw) - 1)
    assert caught.value.code == "body_too_large"
    with pytest.raises(ApiError) as caught:
        decompress(body[:-1], GZIP, len(raw))
    assert caught.value.code == "invalid_encoding"
    deflated = zlib.compress(raw)
    assert decompress(deflated, zlib.MAX_WBITS, len(raw)) == raw
    with pytest.raises(ApiError) as caught:
        decompress(deflated + deflated, zlib.MAX_WBITS, 2 * len(raw))
    assert caught.value.code == "invalid_encoding"


# --- no inflation before the permission check ------------------------------------------

# Each is refused once inflated (past the 256 KiB artefact limit, or not gzip after the
# members), so an answer of 401/403 shows it was not inflated.
BODIES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "gzip_bomb": ("gzip", lambda: gzip.compress(b" " * (ARTEFACT_LIMIT + 1))),
    "deflate_bomb": ("deflate", lambda: zlib.compress(b" " * (ARTEFACT_LIMIT + 1))),
    "many_members_then_garbage": ("gzip", lambda: gzip.compress(b"") * 40 + b"garbage"),
}
# Each path with a role that may not post to it.
PATHS = {
    "infer": (INFER, "viewer"),
    "feedback": (FEEDBACK, "scorer"),
    "records": (RECORDS, "viewer"),
    "registration": (VERSIONS, "viewer"),
    "alertmanager": (ALERTS, "viewer"),
}


@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
@pytest.mark.parametrize("caller", ["no_token", "unknown_token", "wrong_role"])
@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_a_compressed_body_is_not_inflated_for_a_caller_the_route_refuses(
    body: str, path: str, caller: str, chunked: bool, small: Running
) -> None:
    coding, make = BODIES[body]
    url, wrong_role = PATHS[path]
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
    if caller == "unknown_token":
        headers["Authorization"] = "Bearer tw_not-a-token-anyone-holds"
    elif caller == "wrong_role":
        headers |= small.auth(wrong_role)
    content: Any = make()
    if chunked:
        data = content
        content = (data[i : i + 64] for i in range(0, len(data), 64))
    r = httpx.post(f"{small.url}{url}", content=content, headers=headers)
    if caller == "wrong_role":
        refused(r, 403, "forbidden")
    else:
        refused(r, 401, "invalid_token" if caller == "unknown_token" else "unauthenticated")


@pytest.mark.parametrize("path", ["infer", "feedback"])
def test_a_gzip_body_of_seventeen_members_with_a_valid_token_is_a_400(
    path: str, small: Running
) -> None:
    if path == "infer":
        url, role, raw = INFER, "scorer", infer_body("seventeen-members")
    else:
        url, role = FEEDBACK, "labeller"
        raw = json.dumps({"items": [{"request_id": "seventeen", "label": 1}]}).encode()
    headers = small.auth(role) | {"Content-Encoding": "gzip"}
    r = httpx.post(f"{small.url}{url}", content=members(raw, 17), headers=headers)
    refused(r, 400, "invalid_encoding")
    assert "16" in r.json()["error"]
    r = httpx.post(f"{small.url}{url}", content=members(raw, 16), headers=headers)
    assert r.status_code == 200, r.text


def test_a_compressed_registration_is_inflated_under_the_artefact_limit(
    small: Running,
) -> None:
    """Read (after the operator's token is checked) and refused for what it holds."""
    registration = {
        "onnx_base64": base64.b64encode(random.Random(1).randbytes(100_000)).decode(),
        "task": "binary",
        "feature_names": [f"x{i}" for i in range(8)],
        "stage": "shadow",
    }
    raw = json.dumps(registration).encode()
    assert LIMIT < len(raw) < ARTEFACT_LIMIT
    r = httpx.post(
        f"{small.url}{VERSIONS}",
        content=gzip.compress(raw),
        headers=small.auth("operator") | {"Content-Encoding": "gzip"},
    )
    refused(r, 400, "not_onnx")


# --- the artefact limit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/no/such/route/versions"),
        ("POST", f"/v1/models/{MODEL}/versions/1/versions"),
        ("PUT", VERSIONS),
        ("PATCH", VERSIONS),
    ],
    ids=["unknown_route", "nested_route", "put", "patch"],
)
def test_only_a_registration_post_is_read_under_the_artefact_limit(
    method: str, path: str, small: Running
) -> None:
    content = b"{" + b" " * (LIMIT + 100) + b"}"
    assert len(content) < ARTEFACT_LIMIT
    r = httpx.request(method, f"{small.url}{path}", content=content)
    refused(r, 413, "body_too_large")
    assert str(LIMIT) in r.json()["error"]


# --- what clients send ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_inference_is_scored(algorithm: str, small: Running) -> None:
    import tritonclient.http as httpclient

    x, _ = example_data(3, seed=5)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(np.clip(x, -9, 9).astype(np.float32), binary_data=False)
    client = httpclient.InferenceServerClient(url=small.url.removeprefix("http://"))
    try:
        result = client.infer(
            MODEL,
            [inp],
            request_id=f"compressed-{algorithm}",
            headers=small.auth("scorer"),
            request_compression_algorithm=algorithm,
        )
    finally:
        client.close()
    assert result.get_response()["id"] == f"compressed-{algorithm}"
    assert result.as_numpy("probabilities").shape == (3, 2)


# --- repeated Content-Encoding lines ----------------------------------------------------

# Each list of Content-Encoding field lines, and the body sent under it: gzip, and gzip
# twice for `gzip` twice. Repeated lines are one comma-separated list (RFC 9110 §5.3),
# answered as that one line is: only a single supported coding is read. The first line
# alone was applied, the others ignored: the body was inflated and scored.
REPEATED: dict[str, tuple[list[str], Callable[[bytes], bytes]]] = {
    "gzip_then_br": (["gzip", "br"], gzip.compress),
    "identity_then_gzip": (["identity", "gzip"], gzip.compress),
    "gzip_then_identity": (["gzip", "identity"], gzip.compress),
    "gzip_twice": (["gzip", "gzip"], lambda raw: gzip.compress(gzip.compress(raw))),
}


@pytest.mark.parametrize("lines", list(REPEATED), ids=list(REPEATED))
@pytest.mark.parametrize("path", ["infer", "feedback"])
def test_repeated_content_encoding_lines_are_refused_as_their_joined_line_is(
    lines: str, path: str, small: Running
) -> None:
    if path == "infer":
        url, role, raw = INFER, "scorer", infer_body("repeated-codings")
    else:
        url, role = FEEDBACK, "labeller"
        raw = json.dumps({"items": [{"request_id": "repeated", "label": 1}]}).encode()
    codings, encode = REPEATED[lines]
    body = encode(raw)
    joined = httpx.post(
        f"{small.url}{url}",
        content=body,
        headers=small.auth(role) | {"Content-Encoding": ", ".join(codings)},
    )
    refused(joined, 415, "unsupported_content_encoding")
    headers = [*small.auth(role).items(), *(("Content-Encoding", c) for c in codings)]
    r = httpx.post(f"{small.url}{url}", content=body, headers=headers)
    refused(r, 415, "unsupported_content_encoding")
    assert ", ".join(codings) in r.json()["error"]  # the list as the lines make it


@pytest.mark.parametrize("path", ["infer", "feedback"])
def test_one_content_encoding_line_of_gzip_is_still_inflated(path: str, small: Running) -> None:
    if path == "infer":
        url, role, raw = INFER, "scorer", infer_body("one-coding")
    else:
        url, role = FEEDBACK, "labeller"
        raw = json.dumps({"items": [{"request_id": "one-coding", "label": 1}]}).encode()
    r = httpx.post(
        f"{small.url}{url}",
        content=gzip.compress(raw),
        headers=[*small.auth(role).items(), ("Content-Encoding", "gzip")],
    )
    assert r.status_code == 200, r.text
