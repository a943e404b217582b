"""The daemon's background threads run under SCHED_BATCH: waking them never preempts the
event loop (shadow/_sched.py has the measurement)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from shadow import use_batch_scheduling
from tests.tunewatch.conftest import make_daemon
from tunewatch._example import ExampleModel

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux only")


def test_use_batch_scheduling_changes_only_the_calling_thread() -> None:
    seen: list[int] = []

    def body() -> None:
        assert use_batch_scheduling()
        seen.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread is untouched


def test_writer_shadow_worker_and_checkpointer_run_under_sched_batch(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)
    daemon.runtime.start()
    try:
        names = {"tunewatch-recorder", "shadow-0", "tunewatch-wal-checkpoint"}
        threads = {t.name: t for t in threading.enumerate() if t.name in names}
        assert set(threads) == names
        deadline = time.monotonic() + 5  # each sets its policy first thing after it starts
        while True:
            policies = {
                name: os.sched_getscheduler(t.native_id)  # type: ignore[arg-type]
                for name, t in threads.items()
            }
            if policies == dict.fromkeys(names, os.SCHED_BATCH) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert policies == dict.fromkeys(names, os.SCHED_BATCH)
    finally:
        daemon.runtime.close()
        daemon.close()
