"""An inference request refused by the recording bound (``recording.max_pending_bytes``)
while the store stalls is answered 503 ``store_unavailable`` at once and leaves no
record; the one already waiting is answered 200 once its record is stored."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.store._engine import sqlite_file

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
GIVE_UP_S = 30.0  # a guard against a hang, not a timing assertion


def _sample(text: str, name: str) -> float | None:
    return next(
        (float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)), None
    )


def test_an_inference_past_the_recording_bound_is_answered_503_and_not_recorded(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={"recording": {"max_pending_bytes": 1}, "scheduler": {"enabled": False}},
    )
    assert daemon.recorder.max_pending_bytes == 1  # the daemon passes the config's bound
    writing = threading.Event()
    write_records = daemon.store.write_records

    def spy(requests: Any, outputs: Any, shadow_outputs: Any = (), tallies: Any = ()) -> list[bool]:
        if any(r.request_id == "waits" for r in requests):
            writing.set()
        return write_records(requests, outputs, shadow_outputs, tallies)

    daemon.store.write_records = spy  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {tokens['scorer']}"}

    def infer(url: str, request_id: str) -> httpx.Response:
        body = {
            "id": request_id,
            "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [ROW]}],
        }
        return httpx.post(
            f"{url}/v2/models/{MODEL}/infer", json=body, headers=headers, timeout=GIVE_UP_S
        )

    locker = sqlite3.connect(sqlite_file(daemon.config.store_url) or "", isolation_level=None)
    try:
        with BackgroundServer(daemon.app) as server, ThreadPoolExecutor(1) as pool:
            locker.execute("BEGIN IMMEDIATE")  # the store stalls
            try:
                waits = pool.submit(infer, server.url, "waits")
                assert writing.wait(GIVE_UP_S)  # its record waits for the lock
                refused = infer(server.url, "refused")
                assert not waits.done()
            finally:
                locker.rollback()
            assert waits.result(GIVE_UP_S).status_code == 200
            exposition = daemon.metrics.exposition().decode()
        assert refused.status_code == 503, refused.text
        assert set(refused.json()) == {"error", "code"}
        assert refused.json()["code"] == "store_unavailable"
        assert _sample(exposition, "tunewatch_record_refusals_total ") == 1.0
        assert daemon.store.get_request(MODEL, "waits") is not None
        assert daemon.store.get_request(MODEL, "refused") is None
    finally:
        locker.close()
        daemon.close()
