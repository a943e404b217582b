"""The recorder's writer thread survives an unexpected error while it writes a group, and
readiness notices a writer that died anyway.

A ``MemoryError`` raised while the writer built a group (outside its store call's own
``try``) killed the thread: that request and every later one hung unanswered, the group's
bytes stayed in ``tunewatch_record_pending_bytes``, ``tunewatch_record_failures_total``
stayed 0 and ``/readyz`` answered 200. Now the group fails (500 ``store_error``, logged
with its traceback, counted, its bytes given back) and the next group is written; a
writer thread that is no longer alive makes the daemon not ready (503).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tunewatch._recorder as recorder_module
from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel
from tunewatch._recorder_queue import STOP

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
READY_ROUTES = ("/readyz", "/v2/health/ready", f"/v2/models/{MODEL}/ready")
# long enough for any commit here; a request that hangs fails the test instead of blocking it
TIMEOUT_S = 30.0


@pytest.fixture
def running(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path, trained) as served:
        yield served


def _infer(running: Running, request_id: str) -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}],
    }
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer",
        json=body,
        headers=running.auth("scorer"),
        timeout=TIMEOUT_S,
    )


def _failures(metrics: ServingMetrics) -> float:
    return next(
        s.value
        for m in metrics.record_failures.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


def test_a_group_that_fails_unexpectedly_is_answered_500_and_the_writer_goes_on(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = recorder_module._winning_outputs
    calls: list[int] = []

    def fails_once(group: list[recorder_module.Pending]) -> list[object]:
        calls.append(len(group))
        if len(calls) == 1:
            raise MemoryError("injected once")
        return list(real(group))

    monkeypatch.setattr(recorder_module, "_winning_outputs", fails_once)
    recorder = running.daemon.recorder
    failures_before = _failures(running.daemon.metrics)

    with caplog.at_level(logging.ERROR, logger="tunewatch._recorder"):
        failed = _infer(running, "a0")
    assert failed.status_code == 500, failed.text
    assert failed.json().keys() >= {"error", "code"}
    assert failed.json()["code"] == "store_error"
    assert _failures(running.daemon.metrics) == failures_before + 1
    logged = [r for r in caplog.records if r.name == "tunewatch._recorder" and r.exc_info]
    assert [r.exc_info[0] for r in logged if r.exc_info] == [MemoryError]
    assert "1 requests" in logged[0].getMessage()

    stored = _infer(running, "a1")
    assert stored.status_code == 200, stored.text
    assert running.daemon.store.get_outputs(MODEL, "a1")
    assert not running.daemon.store.get_outputs(MODEL, "a0")
    assert recorder._thread is not None and recorder._thread.is_alive()
    ready = [httpx.get(f"{running.url}{r}", timeout=TIMEOUT_S) for r in READY_ROUTES]
    assert [r.status_code for r in ready] == [200] * len(READY_ROUTES)
    # what is still held (the runs' tallies, shadow outputs) is written as it closes: the
    # bound then holds nothing, the failed group's bytes given back once
    recorder.close()
    assert recorder.pending_bytes == 0


def test_a_replica_whose_writer_thread_died_is_not_ready(running: Running) -> None:
    assert _infer(running, "before").status_code == 200
    recorder = running.daemon.recorder
    thread = recorder._thread
    assert thread is not None
    recorder._queue.put(STOP)  # how close() stops it, the thread left in place
    thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    answers = [httpx.get(f"{running.url}{r}", timeout=TIMEOUT_S) for r in READY_ROUTES]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (503, "store_unavailable")
    ] * len(READY_ROUTES)
