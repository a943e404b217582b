"""A delivery whose dispatch fails after the episode's ``alert_received`` was recorded (the
job's insert waited out the lock timeout: 503) leaves the episode owed: Alertmanager's
retry queues the job and records its outcome without recording the alert again.

It released the episode as if nothing had been recorded, and the retry handled it anew: a
second ``alert_received`` for the episode, counted twice in ``tunewatch_events_total``,
where the docs say it is recorded and counted once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.api.alert_helpers import alert, job_fingerprints, payload
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts


def test_an_alert_whose_job_could_not_be_queued_is_recorded_once_and_queued_by_the_retry(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> None:
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "store": {"url": pg_url, "lock_timeout_s": 0.2},
            "tuning": {"max_concurrent_jobs": 10},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )
    ctx = daemon.app.ctx
    locker_engine = sa.create_engine(pg_url)
    try:
        with locker_engine.connect() as locker:
            # the event is written; the job's insert waits for the table, and times out
            locker.execute(sa.text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(StoreUnavailableError):
                handle_alerts(ctx, payload(alert("fp1")))
            locker.rollback()
        retried = handle_alerts(ctx, payload(alert("fp1")))  # Alertmanager's retry
        assert len(retried["jobs"]) == 1, retried
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []
        assert job_fingerprints(daemon) == ["fp1"]
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == ["action_taken", "alert_received"]
        assert daemon.scheduler.event_counts is not None  # the leader's, from the store
        daemon.scheduler.event_counts.poll()
        counted = daemon.metrics.registry.get_sample_value(
            "tunewatch_events_total", {"model": MODEL, "type": "alert_received"}
        )
        assert counted == 1
    finally:
        locker_engine.dispose()
        daemon.close()
