"""A body still arriving holds no feedback slot nor bulk mirror slot: the slots bound the
work of checking and writing a body, taken once it is all in.

Four labeller connections that sent their heads and ``{"items":[`` and then stopped held
every feedback slot until the read timeout (30 s) closed them: other labellers were
answered 429 ``feedback_busy`` 58 times, their first label stored 29 s on. Large mirror
calls took their slots the same way, before their bodies arrived.

Each stalled request asks ``Expect: 100-continue``: the daemon sends ``100 Continue``
as the route begins reading its body, which is the point where the slot was taken.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.tunewatch.api.raw_http import Conn
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel
from tunewatch.api._body import INLINE_JSON_BYTES
from tunewatch.api._feedback_limit import MAX_FEEDBACK_IN_PROGRESS
from tunewatch.api._mirror_limit import MAX_BULK_MIRRORS_IN_PROGRESS

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


@pytest.fixture(scope="module")
def uploading(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("slow-uploads"), trained) as served:
        yield served


def _stalled(running: Running, path: str, role: str, length: int, start: bytes) -> Conn:
    """A request to ``path`` whose body, once invited, stops after ``start``."""
    conn = Conn(running.server.port, timeout=WAIT_S)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {running.auth(role)['Authorization']}\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    conn.send(head.encode())
    assert conn.answer().status == 100  # the route is reading the body
    conn.send(start)
    return conn


@pytest.fixture
def conns() -> Iterator[list[Conn]]:
    opened: list[Conn] = []
    try:
        yield opened
    finally:
        for conn in opened:
            conn.close()


def test_stalled_feedback_uploads_do_not_turn_other_labellers_away(
    uploading: Running, conns: list[Conn]
) -> None:
    path = f"/v1/models/{MODEL}/feedback"
    for _ in range(MAX_FEEDBACK_IN_PROGRESS):
        conns.append(_stalled(uploading, path, "labeller", 1000, b'{"items":['))

    answer = httpx.post(
        f"{uploading.url}{path}",
        json={"items": [{"request_id": "while-stalled", "label": 1}]},
        headers=uploading.auth("labeller"),
        timeout=WAIT_S,
    )
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["results"]] == ["unknown_request"]


def test_stalled_large_mirror_uploads_do_not_turn_other_mirror_calls_away(
    uploading: Running, conns: list[Conn]
) -> None:
    path = f"/v1/models/{MODEL}/records"
    for _ in range(MAX_BULK_MIRRORS_IN_PROGRESS):
        conns.append(_stalled(uploading, path, "scorer", 2 * INLINE_JSON_BYTES, b'{"records":['))

    records = [
        {"id": f"while-stalled-{i:05d}", "inputs": [ROW], "outputs": [[0.3, 0.7]]}
        for i in range(1_000)
    ]
    body = httpx.Request("POST", "/", json={"records": records}).content
    assert len(body) > INLINE_JSON_BYTES  # a call that needs a bulk slot
    answer = httpx.post(
        f"{uploading.url}{path}",
        json={"records": records},
        headers=uploading.auth("scorer"),
        timeout=WAIT_S,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(records)
