"""A 503 ``store_unavailable`` that does not come from the database keeps its own message:
only the database's errors, which carry the driver's text (host, port, user), are
answered with the fixed "the store is unavailable; retry later"."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._errors import DatabaseUnavailableError, StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.api._errors import STORE_UNAVAILABLE_MESSAGE, describe

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


def test_only_the_database_s_errors_are_answered_with_the_fixed_message() -> None:
    driver = DatabaseUnavailableError("store add_labels: database unavailable: host 10.0.0.7")
    assert describe(driver) == (503, "store_unavailable", STORE_UNAVAILABLE_MESSAGE)
    ours = StoreUnavailableError("the recorder is closed: the daemon is shutting down")
    assert describe(ours) == (503, "store_unavailable", ours.message)


def test_a_request_after_the_recorder_closed_is_told_the_daemon_is_shutting_down(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """After the recorder closed, inference answered "the store is unavailable; retry
    later", as if the database were down."""
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    try:
        with BackgroundServer(daemon.app) as server:
            running = Running(daemon=daemon, server=server, tokens=tokens)
            daemon.runtime.recorder.close()
            infer = {
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}]
            }
            r = httpx.post(
                f"{running.url}/v2/models/{MODEL}/infer", json=infer, headers=running.auth("scorer")
            )
            assert r.status_code == 503, r.text
            assert "the daemon is shutting down" in r.json()["error"], r.text
    finally:
        daemon.close()
