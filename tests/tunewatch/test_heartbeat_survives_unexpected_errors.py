"""A tuning worker's heartbeat thread outlives a beat that raised what it did not expect
(not a ``TunewatchError``): one ``RuntimeError`` ended it, the worker tuned on silently,
and the leader queued its job again as a dead worker's (SIGKILLing the worker on its
own host), the third time failing the retune."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tunewatch._tuning_progress import Heartbeat
from tunewatch.store import Store
from tunewatch.store._schema import jobs

#: the beats the test waits for: one, the one that raises, and two after it
BEATS = 4


class _Watched(Heartbeat):
    """A heartbeat whose ``ended`` is set when its thread ends."""

    def __init__(self, store: Store, job_id: int, interval_s: float) -> None:
        super().__init__(store, job_id, interval_s)
        self.ended = threading.Event()

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.ended.set()


def test_a_beat_raising_an_unexpected_error_is_logged_and_the_next_beats_go_on(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "worker-A")
    real = store.heartbeat_job
    calls: list[int] = []
    done = threading.Event()

    def heartbeat_job(job_id: int) -> None:
        calls.append(job_id)
        if len(calls) == 2:
            # the beat before this one was an hour ago, as its worker's job would be
            # found if its heartbeat stopped here: stale to the leader
            with store.engine.begin() as conn:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
                )
            raise RuntimeError("injected: the second beat")
        real(job_id)
        if len(calls) >= BEATS:
            done.set()

    monkeypatch.setattr(store, "heartbeat_job", heartbeat_job)
    caplog.set_level(logging.ERROR, logger="tunewatch._tuning_progress")
    heartbeat = _Watched(store, job.id, 0.01)
    with heartbeat:
        threading.Thread(target=lambda: (heartbeat.ended.wait(), done.set()), daemon=True).start()
        assert done.wait(60)
        assert len(calls) >= BEATS and not heartbeat.ended.is_set()
        assert heartbeat._thread.is_alive()
    beaten = store.get_job(job.id).heartbeat_at
    assert beaten is not None and beaten > datetime.now(UTC) - timedelta(minutes=1)
    assert store.requeue_stale_jobs(older_than=timedelta(minutes=30), max_crashes=3) == []
    assert store.get_job(job.id).status == "running"
    [logged] = [r for r in caplog.records if r.exc_info is not None]
    assert f"job={job.id}" in logged.getMessage() and "heartbeat" in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is RuntimeError
