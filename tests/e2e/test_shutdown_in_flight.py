"""SIGTERM while a scoring request waits for its commit: the request still ends in JSON.

A scoring request is answered only once its records are durable, and a commit waits up to
the store's lock timeout (`store.lock_timeout_s`, 30 s by default) for the write lock.
Stopped while another process held that lock, the daemon used to give requests in flight
10 s: uvicorn then cancelled them, answered a text/plain 500 and logged a traceback, and
the record could still be committed during shutdown, so a retry was refused as a
duplicate. Here the store waits 12 s, not the default 30: longer than that old 10 s, so the
test still fails should `serve` give a fixed grace again; that the grace period outlasts any
configured timeout is tests/tunewatch/test_daemon_lock_timeout.py's.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.test_crash_durability import _lock_store, _release, _start
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import _free_port
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import Store

REQUEST_ID = "in-flight-at-sigterm"
#: The daemon's `store.lock_timeout_s`: the commit gives up on the held lock after it.
LOCK_TIMEOUT_S = 12
#: Longer than any answer takes: the default lock timeout (30 s) and then some, should the
#: daemon not take the configured one.
CLIENT_TIMEOUT_S = 90.0


def _infer(port: int, token: str) -> httpx.Response:
    x, _ = example_data(1, seed=3)
    body = {
        "id": REQUEST_ID,
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": x[0].tolist()}],
    }
    return httpx.post(
        f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=CLIENT_TIMEOUT_S,
    )


def _wait_until_scored(port: int) -> None:
    """Until the daemon counts the request's row as scored: its records are then handed to
    the recorder in the same event-loop step, and its answer waits for their commit."""
    scored = f'tunewatch_inference_rows_total{{model="{MODEL}"}} 1.0'
    deadline = time.monotonic() + 30
    while scored not in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text:
        assert time.monotonic() < deadline, "the request was not scored within 30 s"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_while_a_request_waits_for_the_store_lock_answers_it_in_json(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    data = tmp_path / "data"
    daemon, tokens = make_daemon(data, trained)
    daemon.close()
    config = tmp_path / "tunewatch.yaml"
    # no scheduler: its jobs would wait on the held lock as well; this is about requests
    raw = {
        "data_dir": str(data),
        "store": {"lock_timeout_s": LOCK_TIMEOUT_S},
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    config.write_text(yaml.safe_dump(raw))
    store_url = f"sqlite:///{data / 'tunewatch.db'}"
    port = _free_port()
    log = tmp_path / "daemon.log"

    proc = _start(config, port, log)
    try:
        locker = _lock_store(store_url)  # held from before the request until it is answered
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                answer = pool.submit(_infer, port, tokens["scorer"])
                _wait_until_scored(port)
                proc.send_signal(signal.SIGTERM)
                response = answer.result()
        finally:
            _release(locker)
        proc.wait(timeout=60)
    finally:
        proc.kill()

    text = log.read_text()
    assert response.headers["content-type"] == "application/json", (
        f"{response.status_code} {response.headers['content-type']}: {response.text[:300]}"
    )
    # the lock outlived the commit's lock timeout: the recorder's own answer
    assert response.status_code == 503
    assert response.json() == {"error": response.json()["error"], "code": "store_unavailable"}
    # a clean stop: uvicorn ends by raising the signal it caught again, once the daemon
    # closed (a kill would say -9, a crash 1)
    assert proc.returncode == -signal.SIGTERM, text[-3000:]
    assert "Application shutdown complete." in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    # serve told the recorder before uvicorn's grace began: a request whose commit starts
    # past 22 - 17 - 1 s would be answered 503 unrecorded (the recorder's tests show it)
    assert "requests whose commit has not started within 4.0 s fail" in text, text[-3000:]
    store = Store(store_url)
    try:  # answered 503, not recorded: a retry is taken, not refused as a duplicate
        assert REQUEST_ID not in store.request_ids(MODEL)
    finally:
        store.close()
