"""The daemon's shutdown stops the leader's purge between batches, audited; the stopped
run does not count as the last run, so the next leader purges soon."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch._retention_task import purge_task
from tunewatch.store import Store


@pytest.fixture
def store(m_store: Store) -> Store:
    return m_store


def test_a_purge_the_shutdown_stops_is_audited_and_is_not_the_last_run(store: Store) -> None:
    at = store.database_now() - timedelta(days=40)
    ids = [f"old-{i}" for i in range(2001)]
    store.write_records(
        [replace(request_record(rid), received_at=at) for rid in ids],
        [replace(output_record(rid), created_at=at) for rid in ids],
    )
    stop = threading.Event()
    stop.set()  # the daemon is stopping
    task = purge_task(store, retention_days=30, stop=stop)

    task.run()

    assert store.count_requests("m") == 1  # the batch running when it stopped went
    (entry,) = store.audit_log(action="purge_records")
    assert entry.details["outcome"] == "stopped"
    assert entry.details["counts"] == {"requests": 2000, "outputs": 2000, "labels": 0}
    assert task.last_run() == datetime(1970, 1, 1, tzinfo=UTC)

    purge_task(store, retention_days=30).run()

    assert store.count_requests("m") == 0
    assert task.last_run() == store.audit_log(1, action="purge_records")[0].at
