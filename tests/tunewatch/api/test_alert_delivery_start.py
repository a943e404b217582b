"""A firing delivery begins when it arrives, not when one of the webhook's threads takes
it up: one that waited for a thread while its alert resolved (the resolve decided by
another replica) is stale, and reopens nothing.

Its start was read from the database's clock at its first claim, after an unbounded wait
for a thread (4 deliveries held by a lock wait, say): a delivery that waited past
``REFIRE_AFTER`` took its stale ``firing`` for the alert firing again, reopened the
resolved episode and queued a retune for it.
"""

from __future__ import annotations

import queue
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.tunewatch.api.alert_helpers import alert, payload, retune_daemon
from tests.tunewatch.conftest import MODEL, holding
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api import _alerts
from tunewatch.api._alerts import handle_alerts
from tunewatch.store import _alert_episodes
from tunewatch.store._schema import alert_episodes

WAIT_S = 60.0  # a safety net for a broken build, never the thing the test measures


def test_a_firing_delivery_that_arrived_before_the_resolve_reopens_nothing_when_decided_later(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the 2-minute window, any delivery that began after the resolve is the alert
    # firing again: the delivery's wait, however short, decides what it is.
    monkeypatch.setattr(_alert_episodes, "REFIRE_AFTER", timedelta(0))
    daemon, tokens = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    answers: queue.Queue[httpx.Response] = queue.Queue()
    try:
        with (
            BackgroundServer(daemon.app) as server,
            holding(monkeypatch, _alerts, "_handle_body", 1) as held,
        ):
            sender = threading.Thread(
                target=lambda: answers.put(
                    httpx.post(
                        f"{server.url}/v1/alerts/alertmanager",
                        json=payload(alert("fp1")),
                        headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
                        timeout=WAIT_S,
                    )
                )
            )
            sender.start()
            assert held.entered.acquire(timeout=WAIT_S)  # arrived; not yet decided
            # the resolve, decided meanwhile (by another replica)
            handle_alerts(daemon.app.ctx, payload(alert("fp1", status="resolved")))
            held.release.set()
            sender.join(WAIT_S)
        answer = answers.get_nowait()
        assert answer.status_code == 200 and answer.json()["jobs"] == [], answer.text
        assert daemon.store.list_jobs(model=MODEL) == []
        with daemon.store.engine.connect() as conn:
            status = conn.execute(
                select(alert_episodes.c.status).where(alert_episodes.c.fingerprint == "fp1")
            ).scalar_one()
        assert status == "resolved"
    finally:
        daemon.close()
