"""A redelivered group whose owed retunes are still suppressed writes next to nothing: once
a delivery finds a model in its cool-down (or the quota full), its other owed episodes
are left owed for the next delivery without a write. Each cost three write transactions
on every redelivery (the claim, the job's insert under the job lock, the settle): a
5,000-alert group redelivered during its model's cool-down took 26 s on SQLite, its
writes queued behind one another (2 s once decided)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, update

from tests.tunewatch.api.alert_helpers import alert, job_fingerprints, payload, retune_daemon
from tests.tunewatch.conftest import MODEL
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts
from tunewatch.store._engine import READ_ONLY_OPTION
from tunewatch.store._schema import jobs

GROUP = 40  # three writes an owed episode, as before the fix, are 117 a redelivery


@contextmanager
def _write_transactions(daemon: Daemon) -> Iterator[list[int]]:
    """A count of the writing transactions begun on the store's engine meanwhile (on
    SQLite each a ``BEGIN IMMEDIATE``, which waits for every other writer)."""
    begun = [0]

    def on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY_OPTION):
            begun[0] += 1

    engine = daemon.store.engine
    event.listen(engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(engine, "begin", on_begin)


def _cool_down_over(daemon: Daemon) -> None:
    """The model's jobs queued over an hour ago, as if its cool-down had passed (it is
    timed by the database's clock)."""
    for job in daemon.store.list_jobs(model=MODEL):
        with daemon.store.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(created_at=job.created_at - timedelta(minutes=61))
            )


def _summary(daemon: Daemon, group: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The delivery's answer and the writing transactions it took."""
    with _write_transactions(daemon) as begun:
        summary = handle_alerts(daemon.app.ctx, group)
    return summary, begun[0]


def test_a_group_redelivered_in_its_cool_down_writes_next_to_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=60)
    group = payload(*(alert(f"fp{i:03d}") for i in range(GROUP)))
    try:
        assert len(_summary(daemon, payload(alert("fp000")))[0]["jobs"]) == 1
        # done (while it is queued, the others are its duplicates), its cool-down holds
        [job] = daemon.store.list_jobs(model=MODEL)
        daemon.store.finish_job(job.id, status="succeeded", result={})
        first, _ = _summary(daemon, group)  # the rest owed: a cool-down
        assert first["jobs"] == [] and first["new_episodes"] == GROUP - 1

        again, writes = _summary(daemon, group)
        assert again["jobs"] == [] and again["ignored"] == [] and again["busy"] == []
        # the first owed episode's claim, its suppressed insert and its settle; no more
        assert writes <= 3, writes
        assert _summary(daemon, group)[1] <= 3

        _cool_down_over(daemon)
        over, _ = _summary(daemon, group)
        # one owed episode gets its job, which settles the others (each once: its claim,
        # its action_duplicate, its settle): they were received before it was queued
        assert len(over["jobs"]) == 1
        assert job_fingerprints(daemon) == ["fp000", "fp001"]
        decided, writes = _summary(daemon, group)
        assert decided["jobs"] == [] and writes == 0
        _cool_down_over(daemon)
        assert _summary(daemon, group)[0]["jobs"] == []  # nothing is owed any more
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=3 * GROUP + 10)]
        # each alert recorded once, each suppression once: the retries recorded nothing
        assert events.count("alert_received") == GROUP
        assert events.count("action_suppressed") == GROUP - 1
        assert events.count("action_taken") == 2
        assert events.count("action_duplicate") == GROUP - 2
    finally:
        daemon.close()


def test_a_group_redelivered_while_the_quota_is_full_writes_next_to_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    group = payload(*(alert(f"fp{i:03d}") for i in range(GROUP)))
    try:
        # another model's job holds the only slot (while one of MODEL's is queued, the
        # group's retunes are its duplicates)
        daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
        blocker, _ = daemon.store.create_job(model="other", kind="retune", trigger={}, spec={})
        first, _ = _summary(daemon, group)  # all owed: the quota
        assert first["jobs"] == [] and first["new_episodes"] == GROUP

        again, writes = _summary(daemon, group)
        assert again["jobs"] == [] and writes <= 3, writes

        daemon.store.finish_job(blocker.id, status="succeeded", result={})
        over, _ = _summary(daemon, group)
        # room for one: the first owed episode gets it, the others are its duplicates
        assert len(over["jobs"]) == 1
        assert job_fingerprints(daemon) == ["fp000"]
        assert _summary(daemon, group) == ({**over, "jobs": [], "new_episodes": 0}, 0)
    finally:
        daemon.close()
