"""A database outage answers 503 ``store_unavailable`` with a fixed message: the driver's
text (the database's host, port and user) stays in the daemon's log.

The 503 bodies carried the driver's error verbatim, to any caller: during an outage the
token lookup fails, so a made-up token was answered with it too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tests.tunewatch.tcp_proxy import TcpProxy
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

pytestmark = pytest.mark.postgres

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


@pytest.fixture
def proxied(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> Iterator[tuple[Running, TcpProxy]]:
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    daemon, tokens = make_daemon(
        tmp_path, trained, store_url=through, extra={"scheduler": {"enabled": False}}
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens), proxy
    finally:
        proxy.close()
        daemon.close()


def test_an_outage_answers_503_without_the_database_address(
    proxied: tuple[Running, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    running, proxy = proxied
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}]}
    feedback = {"items": [{"request_id": "r1", "label": 1}]}
    made_up = {"Authorization": "Bearer tw_made_up_token"}
    calls = [
        ("made-up token, inference", f"/v2/models/{MODEL}/infer", infer, made_up),
        ("made-up token, feedback", f"/v1/models/{MODEL}/feedback", feedback, made_up),
        ("scorer, inference", f"/v2/models/{MODEL}/infer", infer, running.auth("scorer")),
        ("labeller, feedback", f"/v1/models/{MODEL}/feedback", feedback, running.auth("labeller")),
    ]
    for _, path, body, headers in calls[2:]:  # the tokens' answers are cached before
        answer = httpx.post(f"{running.url}{path}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    # The challenger's output of the inference is written after its answer: once written,
    # nothing is left to commit. A commit still in flight as the proxy closes fails with
    # driver text naming no address ("server closed the connection unexpectedly"), and
    # the warning is logged once a minute, its repeats at debug: the address is looked for
    # in every record (under three xdist workers a late write was the first failure).
    scored = httpx.post(
        f"{running.url}{calls[2][1]}", json=infer, headers=running.auth("scorer")
    ).json()["id"]
    store, deadline = running.daemon.store, time.monotonic() + 30  # a safety net only
    while not any(o.role == "challenger" for o in store.get_outputs(MODEL, scored)):
        assert time.monotonic() < deadline, "the challenger's output was never written"
        os.sched_yield()
    caplog.set_level(logging.DEBUG, logger="tunewatch")
    proxy.close()
    for name, path, body, headers in calls:
        r = httpx.post(f"{running.url}{path}", json=body, headers=headers, timeout=30.0)
        assert r.status_code == 503, (name, r.text)
        assert set(r.json()) == {"error", "code"} and r.json()["code"] == "store_unavailable"
        for secret in ("127.0.0.1", str(proxy.port), "postgres", "psycopg", "connection"):
            assert secret not in r.text, (name, r.text)
    logged = [r.getMessage() for r in caplog.records]
    assert any(str(proxy.port) in message for message in logged), logged


def test_a_model_is_not_ready_while_the_store_cannot_record_its_requests(
    proxied: tuple[Running, TcpProxy],
) -> None:
    """``/v2/models/{m}/ready`` (tritonclient's ``is_model_ready``) checked only that the
    model had a champion: 200 through an outage while every inference was 503."""
    running, proxy = proxied
    paths = [f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/1/ready"]
    for path in paths:
        assert httpx.get(f"{running.url}{path}").status_code == 200, path
    proxy.close()
    for path in paths:
        r = httpx.get(f"{running.url}{path}", timeout=30.0)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["code"] == "store_unavailable"
