"""Alert deliveries racing a resolve or a store failure: a firing delivery that began
before its alert resolved reopens nothing, however long it takes to reach the alert; an
owed retune whose action event fails to commit is recorded by Alertmanager's retry."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import select, update

from tests.tunewatch.api.alert_helpers import alert, payload
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._actions import ActionOutcome, Dispatcher
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts
from tunewatch.store._alert_episodes import REFIRE_AFTER
from tunewatch.store._clock import db_now
from tunewatch.store._schema import alert_episodes

_LOCK_TIMEOUT_S = 0.2


def _daemon(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, *, quota: int
) -> tuple[Daemon, dict[str, str]]:
    """A daemon that retunes on alerts, its store waiting ``_LOCK_TIMEOUT_S`` for a lock;
    the scheduler off, so nothing of its own (the leader's lease, the job runner's claims)
    holds a lock the deliveries wait on: under a loaded CI run one held the job queue's
    lock past the 0.2 s and the first delivery got a 503."""
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    return make_daemon(
        tmp_path,
        trained,
        extra={
            "store": {"url": store_url, "lock_timeout_s": _LOCK_TIMEOUT_S},
            "scheduler": {"enabled": False},
            "tuning": {"max_concurrent_jobs": quota},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )


def _database_now(daemon: Daemon) -> datetime:
    with daemon.store.engine.connect() as conn:
        now: datetime = conn.execute(select(db_now(conn))).scalar_one()
    return now


def _episode(daemon: Daemon, fingerprint: str) -> Any:
    c = alert_episodes.c
    with daemon.store.engine.connect() as conn:
        return conn.execute(
            select(c.status, c.decision, c.resolved_at).where(c.fingerprint == fingerprint)
        ).one()


def _resolved_earlier(daemon: Daemon, fingerprint: str, by: timedelta) -> datetime:
    """Move the episode's resolve ``by`` into the past, as if that long had passed since;
    the resolve's new time."""
    c = alert_episodes.c
    resolved_at: datetime = _episode(daemon, fingerprint).resolved_at - by
    with daemon.store.engine.begin() as conn:
        conn.execute(
            update(alert_episodes)
            .where(c.fingerprint == fingerprint)
            .values(resolved_at=resolved_at)
        )
    return resolved_at


def test_a_delivery_that_began_before_the_resolve_does_not_reopen_the_episode(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A delivery of a large group was still deciding when the alert it carried resolved
    (Alertmanager gave up on it and sent the resolve next). Reaching the alert over
    REFIRE_AFTER after the resolve, it took its stale `firing` for the alert firing again:
    it reopened the episode, left firing for good, for a retune of a resolved alert."""
    daemon, _ = _daemon(trained, tmp_path, store_url, quota=10)
    try:
        # the delivery begins, a millisecond before the resolve at least: SQLite's clock
        # counts milliseconds, and the resolve was once stamped in the same one (CI)
        started = _database_now(daemon) - timedelta(milliseconds=1)
        assert handle_alerts(daemon.app.ctx, payload(alert("fp1", status="resolved")))
        # all three minutes in the past: the resolve is aged past REFIRE_AFTER and still
        # came after the delivery began, which reaches the alert only now
        resolved_at = _resolved_earlier(daemon, "fp1", timedelta(minutes=3))
        started -= timedelta(minutes=3)
        assert started < resolved_at < _database_now(daemon) - REFIRE_AFTER
        late = handle_alerts(daemon.app.ctx, payload(alert("fp1")), started=started)
        assert late["jobs"] == [] and daemon.store.list_jobs(model=MODEL) == []
        episode = _episode(daemon, "fp1")
        assert (episode.status, episode.resolved_at) == ("resolved", resolved_at)
    finally:
        daemon.close()


def test_a_delivery_that_began_over_refire_after_past_the_resolve_reopens_the_episode(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Alertmanager fires the alert again (same fingerprint and startsAt) after resolving
    it: a delivery that began over REFIRE_AFTER after the resolve reopens the episode."""
    daemon, _ = _daemon(trained, tmp_path, store_url, quota=10)
    try:
        ctx = daemon.app.ctx
        handle_alerts(ctx, payload(alert("fp1", status="resolved")))
        _resolved_earlier(daemon, "fp1", REFIRE_AFTER + timedelta(seconds=1))
        again = handle_alerts(ctx, payload(alert("fp1")), started=_database_now(daemon))
        assert len(again["jobs"]) == 1
        assert _episode(daemon, "fp1").status == "firing"
    finally:
        daemon.close()


@contextmanager
def _events_locked(store_url: str) -> Iterator[None]:
    """Writes of events wait on a lock a second connection holds (SQLite: the database's
    write lock; PostgreSQL: the table's), and fail after the store's lock timeout."""
    if store_url.startswith("sqlite:///"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as locker:
            locker.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            yield
            locker.rollback()
    finally:
        engine.dispose()


class _FirstRecordLocked(Dispatcher):
    """Records its first outcome while ``lock`` is held: that event write fails."""

    def __init__(self, dispatcher: Dispatcher, lock: AbstractContextManager[None]) -> None:
        super().__init__(dispatcher.store, dispatcher.config, metrics=dispatcher.metrics)
        self._lock: AbstractContextManager[None] | None = lock

    def record(self, model: str, event: str, outcome: ActionOutcome, *, actor: str) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            super().record(model, event, outcome, actor=actor)
            return
        with lock:
            super().record(model, event, outcome, actor=actor)


def test_an_owed_retune_whose_action_event_failed_is_recorded_by_the_retry(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A later delivery queued an owed retune, settled the episode as decided, and only
    then recorded the outcome; the event write failed (503), and Alertmanager's retry
    found the episode decided and recorded nothing: a job with no action event, the audit
    trail saying the alert's retune was suppressed and never that it was queued."""
    daemon, tokens = _daemon(trained, tmp_path, store_url, quota=1)
    store, ctx = daemon.store, daemon.app.ctx
    fastapi_app: Any = daemon.app.app
    group = payload(alert("fp1"), alert("fp2"))
    try:
        with BackgroundServer(daemon.app) as server:

            def deliver() -> httpx.Response:
                return httpx.post(
                    f"{server.url}/v1/alerts/alertmanager",
                    json=group,
                    headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
                )

            # another model's job holds the only slot (while one of MODEL's is queued,
            # its alerts' retunes are that job's duplicates)
            store.ensure_model(name="other", task="binary", feature_names=["x"])
            blocker, _ = store.create_job(model="other", kind="retune", trigger={}, spec={})
            first = deliver()  # fp1 and fp2 owed: the quota is full
            assert first.status_code == 200 and first.json()["jobs"] == [], first.text
            store.finish_job(blocker.id, status="succeeded", result={})  # room for fp1
            locked = _FirstRecordLocked(ctx.dispatcher, _events_locked(store_url))
            fastapi_app.state.ctx = dataclasses.replace(ctx, dispatcher=locked)
            failed = deliver()  # fp1's job is queued; its action event cannot be written
            assert failed.status_code == 503, failed.text
            retried = deliver()  # Alertmanager's retry
            assert retried.status_code == 200, retried.text
            assert deliver().status_code == 200
        [job] = store.list_jobs(model=MODEL)
        assert job.trigger["fingerprint"] == "fp1"
        recorded = [
            e.payload["job"]
            for e in store.list_events(model=MODEL, limit=100)
            if e.type in ("action_taken", "action_duplicate")
        ]
        # fp1's job recorded once, by the retry, and fp2's retune as its duplicate
        assert recorded == [job.id, job.id]
    finally:
        daemon.close()
