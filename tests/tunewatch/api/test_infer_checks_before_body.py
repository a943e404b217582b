"""The inference routes check the caller's token and the model before reading the body.

The front read the whole body (up to ``server.max_body_bytes``) and only then checked the
token: a client without one was invited to send it (``100 Continue``), and 200 tokenless
connections each holding 1 MiB of body raised the daemon's RSS from 367 to 577 MiB. The
``/v1`` routes answered 401 before any body, as the README says of every route. Now a
missing or invalid token is 401, a role that may not score 403, an unknown model 404
``model_not_found`` and a named version not in service 404 ``version_not_found``, before
the body is read: the requests below declare 1,000 bytes and send none.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

WAIT_S = 10.0  # a bound, so that a request left unanswered fails rather than hangs
ROUTES = [
    pytest.param("/v2/models/{model}/infer", id="latest"),
    pytest.param("/v2/models/{model}/versions/1/infer", id="named-version"),
]


def head(port: int, path: str, authorization: str | None, *, expect: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines.append("Content-Length: 1000")
    if expect:
        lines.append("Expect: 100-continue")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def first_answer(port: int, request_head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request_head`` and no body; the first response, read whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(request_head)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)
            assert chunk, f"closed without an answer; received {received!r}"
            received += chunk
        status_head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *lines = status_head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if status_line.startswith("HTTP/1.1 100"):
            return 100, headers, rest
        while len(rest) < int(headers["content-length"]):
            chunk = conn.recv(65536)
            assert chunk, f"closed within a body; received {rest!r}"
            rest += chunk
    return int(status_line.split()[1]), headers, rest


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("role", "model", "status", "code"),
    [
        pytest.param(None, MODEL, 401, "unauthenticated", id="no-token"),
        pytest.param("made-up", MODEL, 401, "invalid_token", id="unknown-token"),
        pytest.param("labeller", MODEL, 403, "forbidden", id="labeller"),
        pytest.param("viewer", MODEL, 403, "forbidden", id="viewer"),
        pytest.param("scorer", "no-such-model", 404, "model_not_found", id="unknown-model"),
    ],
)
@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "no-expect"])
def test_inference_is_refused_before_its_body_is_read(
    running: Running,
    route: str,
    role: str | None,
    model: str,
    status: int,
    code: str,
    expect: bool,
) -> None:
    if role is None:
        authorization = None
    elif role == "made-up":
        authorization = "Bearer tw_made_up_token"
    else:
        authorization = running.auth(role)["Authorization"]
    port = running.server.port
    errors = running.daemon.runtime.metrics.http_errors.labels(code)
    errors_before = errors._value.get()
    answered, headers, body = first_answer(
        port, head(port, route.format(model=model), authorization, expect=expect)
    )
    assert answered == status, body  # not 100 Continue, nor an answer after the body
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["code"] == code
    assert set(payload) == {"error", "code"}
    assert errors._value.get() == errors_before + 1  # counted as before


@pytest.mark.parametrize(
    "version",
    [
        pytest.param("99", id="not-in-service"),
        pytest.param("v1", id="not-a-number"),
        pytest.param("1" * 30, id="too-many-digits"),
    ],
)
@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "no-expect"])
def test_a_named_version_not_in_service_is_refused_before_the_body(
    running: Running, version: str, expect: bool
) -> None:
    port = running.server.port
    authorization = running.auth("scorer")["Authorization"]
    path = f"/v2/models/{MODEL}/versions/{version}/infer"
    answered, _, body = first_answer(port, head(port, path, authorization, expect=expect))
    assert answered == 404, body  # not 100 Continue, nor an answer after the body
    assert json.loads(body)["code"] == "version_not_found"


@pytest.mark.parametrize("route", ROUTES)
def test_a_scorer_is_invited_to_send_the_body_and_answered(
    running: Running, trained: list[ExampleModel], route: str
) -> None:
    port = running.server.port
    authorization = running.auth("scorer")["Authorization"]
    body = _infer_body(trained)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        request_head = head(port, route.format(model=MODEL), authorization)
        conn.sendall(request_head.replace(b"1000", str(len(body)).encode()))
        assert _read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body)
        assert _read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 200")


@pytest.fixture
def unauthenticated(trained: list[ExampleModel], tmp_path: Path) -> Iterator[int]:
    daemon, _ = make_daemon(
        tmp_path, trained, extra={"auth": {"disabled": True}, "scheduler": {"enabled": False}}
    )
    with BackgroundServer(daemon.app) as server:
        yield server.port
    daemon.close()


def test_with_auth_disabled_a_request_without_token_is_scored(
    unauthenticated: int, trained: list[ExampleModel]
) -> None:
    body = _infer_body(trained)
    with socket.create_connection(("127.0.0.1", unauthenticated), timeout=WAIT_S) as conn:
        request_head = head(unauthenticated, f"/v2/models/{MODEL}/infer", None)
        conn.sendall(request_head.replace(b"1000", str(len(body)).encode()))
        assert _read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body)
        assert _read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    status, _, answer = first_answer(
        unauthenticated, head(unauthenticated, "/v2/models/no-such-model/infer", None)
    )
    assert (status, json.loads(answer)["code"]) == (404, "model_not_found")


def _infer_body(trained: list[ExampleModel]) -> bytes:
    n_features = len(trained[0].metadata.feature_names)
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, n_features],
                    "datatype": "FP32",
                    "data": [0.5] * n_features,
                }
            ]
        }
    ).encode()


def _read_until(conn: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = conn.recv(65536)
        assert chunk, f"closed; received {received!r}"
        received += chunk
    return received
