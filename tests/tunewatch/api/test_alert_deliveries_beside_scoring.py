"""Alertmanager deliveries run in a few worker threads of their own, and only so many
may wait for one: the rest are answered 503 ``webhook_busy`` with ``Retry-After`` at once
(Alertmanager retries a 5xx with backoff, so nothing is lost).

Each delivery ran whole in anyio's default worker-thread pool, the one scoring's token
look-ups use too, and took store connections: 48 concurrent deliveries of 200 alerts
each (a Prometheus restart: every group's ``group_wait`` ends together, each sent by
every HA peer) held scoring up to 38-50 s and made it answer 503 ``store_unavailable``
(the store's connection pool was exhausted).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from tests.tunewatch.api.alert_helpers import alert, payload
from tests.tunewatch.api.raw_http import Conn
from tests.tunewatch.conftest import MODEL, HeldCalls, Running, holding, serving
from tunewatch._auth import hash_token, new_token
from tunewatch._example import ExampleModel
from tunewatch.api import _alerts
from tunewatch.api._context import ALERT_THREADS, ALERT_WAITING

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
# Past the default pool's 40 threads: run there, the held deliveries would take them all.
TURNED_AWAY = 24
DELIVERIES = ALERT_THREADS + ALERT_WAITING + TURNED_AWAY


@pytest.fixture(scope="module")
def hooked(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("alerts-beside-scoring"), trained) as served:
        yield served


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCalls]:
    """Every delivery's work, held in its worker thread until released."""
    with holding(monkeypatch, _alerts, "_handle_body", DELIVERIES) as holder:
        yield holder


def _fresh_token(running: Running, role: str) -> dict[str, str]:
    """A token no request used yet: its first request looks it up in the store."""
    token = new_token()
    running.daemon.store.add_token(
        name=f"fresh-{role}-{token[:6]}", role=role, token_hash=hash_token(token), actor="test"
    )
    return {"Authorization": f"Bearer {token}"}


def _deliver(running: Running, i: int) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/alerts/alertmanager",
        json=payload(*(alert(f"g{i}a{j}") for j in range(20))),
        headers=running.auth("alertmanager"),
        timeout=WAIT_S,
    )


def _assert_busy(status: int, body: Any, headers: Mapping[str, str]) -> None:
    assert status == 503, (status, body)
    assert set(body) == {"error", "code"} and body["code"] == "webhook_busy", body
    assert int(headers["retry-after"]) >= 1


def test_deliveries_past_the_waiting_bound_are_503_and_scoring_answers_meanwhile(
    hooked: Running, held: HeldCalls
) -> None:
    answers: queue.Queue[httpx.Response] = queue.Queue()
    senders = [
        threading.Thread(target=lambda i=i: answers.put(_deliver(hooked, i)))
        for i in range(DELIVERIES)
    ]
    for t in senders:
        t.start()
    try:
        for _ in range(ALERT_THREADS):  # the deliveries holding the webhook's threads
            assert held.entered.acquire(timeout=WAIT_S)
        # the others wait for a thread, up to the bound; the rest are refused at once
        for _ in range(TURNED_AWAY):
            busy = answers.get(timeout=WAIT_S)
            _assert_busy(busy.status_code, busy.json(), busy.headers)

        # scoring and the management API answer, their tokens looked up in the store
        scored = httpx.post(
            f"{hooked.url}/v2/models/{MODEL}/infer",
            json={"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}]},
            headers=_fresh_token(hooked, "scorer"),
            timeout=WAIT_S,
        )
        assert scored.status_code == 200, scored.text[:300]
        models = httpx.get(
            f"{hooked.url}/v1/models", headers=_fresh_token(hooked, "viewer"), timeout=WAIT_S
        )
        assert models.status_code == 200, models.text[:300]

        # refused before its body is read: one that never comes is answered all the same
        conn = Conn(hooked.server.port, timeout=WAIT_S)
        token = hooked.tokens["alertmanager"]
        conn.send(
            b"POST /v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        unread = conn.answer()
        conn.close()
        _assert_busy(unread.status, unread.json(), unread.headers)
        assert answers.empty()  # the held and waiting deliveries are all still in progress
    finally:
        held.release.set()
        for t in senders:
            t.join(WAIT_S)
    done = [answers.get_nowait() for _ in range(answers.qsize())]
    assert [a.status_code for a in done] == [200] * (DELIVERIES - TURNED_AWAY)
    assert all(a.json()["received"] == 20 for a in done)
    assert _deliver(hooked, DELIVERIES).status_code == 200  # the threads are free again
