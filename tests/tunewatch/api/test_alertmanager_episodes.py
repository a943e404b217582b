"""The Alertmanager webhook's episodes across deliveries: a retune the quota or a cool-down
suppressed is owed to a later delivery and recorded once; a claim another delivery holds
is waited for, and one a dead delivery holds is answered 503."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.tunewatch.api.alert_helpers import (
    FIRING_AT,
    alert,
    job_fingerprints,
    payload,
    retune_daemon,
)
from tests.tunewatch.conftest import MODEL
from tunewatch._actions import ActionOutcome, Dispatcher
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import _OWED, CLAIM_WAIT_S, dedupe_key, handle_alerts
from tunewatch.store import _alert_episodes
from tunewatch.store._alert_episodes import REFIRE_AFTER
from tunewatch.store._schema import alert_episodes, jobs


def _age_jobs(daemon: Daemon, by: timedelta) -> None:
    """Move the jobs ``by`` into the past, as if that long had passed since (cool-downs
    are timed by the database's clock)."""
    for job in daemon.store.list_jobs(model=MODEL):
        with daemon.store.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(created_at=job.created_at - by)
            )


def _hold_the_quota(daemon: Daemon) -> int:
    """Another model's job takes the only slot of the quota (1); its id. While a job of
    MODEL's is queued or running, its alerts' retunes are that job's duplicates, so only
    another model's can leave one of MODEL's owed to the quota."""
    daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
    blocker, _ = daemon.store.create_job(model="other", kind="retune", trigger={}, spec={})
    return blocker.id


def _fp2_owed_to_the_quota(daemon: Daemon, deliver: Callable[[dict[str, Any]], Any]) -> int:
    """fp1's episode retuned (its job queued, then done), then fp1 and fp2 delivered while
    another model's job holds the only slot: fp2's retune is owed. The blocker's id."""
    deliver(payload(alert("fp1")))
    _finish_jobs(daemon)
    blocker = _hold_the_quota(daemon)
    deliver(payload(alert("fp1"), alert("fp2")))
    return blocker


def test_an_episode_suppressed_by_the_quota_gets_its_job_from_a_later_delivery(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A suppressed retune was stored as the episode's decision, and every later delivery
    of the still-firing alert was dropped as a repeat: the alert was never acted on."""
    daemon, tokens = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    group = payload(alert("fp1"), alert("fp2"))
    try:
        with BackgroundServer(daemon.app) as server:

            def deliver() -> dict[str, Any]:
                r = httpx.post(
                    f"{server.url}/v1/alerts/alertmanager",
                    json=group,
                    headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
                )
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body

            blocker = _hold_the_quota(daemon)
            assert deliver()["jobs"] == []  # both suppressed: the quota is full
            assert deliver()["jobs"] == []  # still full
            daemon.store.finish_job(blocker, status="succeeded", result={})
            assert len(deliver()["jobs"]) == 1  # room: fp1's; fp2 is its duplicate
            assert job_fingerprints(daemon) == ["fp1"]
            daemon.store.finish_job(
                daemon.store.list_jobs(model=MODEL)[0].id, status="succeeded", result={}
            )
            assert deliver()["jobs"] == []  # both episodes are decided
        assert job_fingerprints(daemon) == ["fp1"]
        suppressed = daemon.store.list_events(model=MODEL, type="action_suppressed")
        # recorded once each, by the first delivery: the second retried them silently
        assert len(suppressed) == 2 and all("quota" in e.payload["reason"] for e in suppressed)
        [duplicate] = daemon.store.list_events(model=MODEL, type="action_duplicate")
        assert duplicate.payload["job"] == daemon.store.list_jobs(model=MODEL)[0].id
    finally:
        daemon.close()


def test_an_episode_first_seen_in_a_cool_down_gets_its_job_after_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """fp2 is first seen in the cool-down of fp1's job, queued before it was received, and
    no retune of the model is queued after it: once the cool-down is over it gets its own.
    (A retune queued after it was received settles it: test_alert_owed_siblings.py.)"""
    daemon, _ = retune_daemon(trained, tmp_path, None, quota=10, cooldown=60)
    ctx = daemon.app.ctx
    try:
        assert len(handle_alerts(ctx, payload(alert("fp1")))["jobs"]) == 1
        _finish_jobs(daemon)  # done: while queued, fp2's and fp3's retunes were its own
        for _ in range(3):  # still in the cool-down: recorded once, retried silently
            assert handle_alerts(ctx, payload(*map(alert, ("fp1", "fp2", "fp3"))))["jobs"] == []
        handle_alerts(ctx, payload(alert("fp3", status="resolved")))
        _age_jobs(daemon, timedelta(minutes=61))
        # fp2 still fires and gets its job; fp3 resolved meanwhile, so a late delivery of
        # it firing acts on nothing
        repeat = payload(alert("fp1"), alert("fp2"), alert("fp3"))
        assert len(handle_alerts(ctx, repeat)["jobs"]) == 1
        _age_jobs(daemon, timedelta(minutes=61))
        assert handle_alerts(ctx, repeat)["jobs"] == []
        assert job_fingerprints(daemon) == ["fp1", "fp2"]
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == sorted(
            ["alert_received"] * 3 + ["action_suppressed"] * 2 + ["action_taken"] * 2
        )
    finally:
        daemon.close()


def test_concurrent_redeliveries_of_an_episode_dispatch_it_once(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Every delivery that arrived before the first one decided ran the dispatcher: one
    job, but an alert_received and an action event per delivery (and as many counts in
    tunewatch_events_total)."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=100, cooldown=0)
    start = threading.Barrier(8)
    summaries: list[dict[str, Any]] = []

    def deliver() -> None:
        start.wait()
        summaries.append(handle_alerts(daemon.app.ctx, payload(alert("fpX"))))

    try:
        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(summaries) == 8 and sum(s["new_episodes"] for s in summaries) == 1
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == ["action_taken", "alert_received"]
        assert job_fingerprints(daemon) == ["fpX"]
    finally:
        daemon.close()


class _FailingOnce(Dispatcher):
    """A dispatcher whose first call fails the way an unreachable store does."""

    failed = False

    def handle(self, *args: Any, **kwargs: Any) -> ActionOutcome:
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("the store is unavailable")
        return super().handle(*args, **kwargs)


def test_a_delivery_that_fails_releases_its_episode_for_the_retry(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The delivery answered 503 must not leave the episode claimed: Alertmanager's retry
    (seconds later, well within the claim's timeout) has to act on it."""
    daemon, _ = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    ctx = dataclasses.replace(daemon.app.ctx, dispatcher=_FailingOnce(daemon.store, daemon.config))
    try:
        with pytest.raises(StoreUnavailableError):
            handle_alerts(ctx, payload(alert("fp1")))
        assert len(handle_alerts(ctx, payload(alert("fp1")))["jobs"]) == 1
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []
        assert job_fingerprints(daemon) == ["fp1"]
    finally:
        daemon.close()


def test_an_episode_a_dead_delivery_still_holds_is_answered_503_until_it_can_be_taken(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a real outage the release fails too, so the failed delivery's claim stays held:
    Alertmanager's retry found the episode claimed, answered 200 with no job, and the
    alert counted as delivered waited for its next repeat (4 h) for a retune."""
    daemon, tokens = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    store = daemon.store
    settle = store.settle_alert_episode

    def unreachable(**kwargs: Any) -> bool:
        raise StoreUnavailableError("the store is unavailable")

    try:
        ctx = dataclasses.replace(
            daemon.app.ctx, dispatcher=_FailingOnce(daemon.store, daemon.config)
        )
        monkeypatch.setattr(store, "settle_alert_episode", unreachable)
        with pytest.raises(StoreUnavailableError):
            handle_alerts(ctx, payload(alert("fp1")))
        monkeypatch.setattr(store, "settle_alert_episode", settle)
        retry = handle_alerts(ctx, payload(alert("fp1")))
        assert retry["jobs"] == [] and retry["busy"] == ["TunewatchDriftHigh"]
        with BackgroundServer(daemon.app) as server:
            r = httpx.post(
                f"{server.url}/v1/alerts/alertmanager",
                json=payload(alert("fp1")),
                headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
            )
        assert r.status_code == 503 and r.json()["code"] == "alert_busy", r.text
        # once the claim is older than its timeout, the next retry takes it
        taken = store.claim_alert_episode(
            fingerprint="fp1",
            starts_at=FIRING_AT,
            model=MODEL,
            alertname="TunewatchDriftHigh",
            labels=alert("fp1")["labels"],
            stale_after=timedelta(0),
        )
        assert taken is not None
    finally:
        daemon.close()


class _FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_a_delivery_whose_episodes_dead_deliveries_hold_waits_once_not_once_per_alert(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Each held alert waited its own CLAIM_WAIT_S: a group of 8 alerts that a dead
    delivery held answered its 503 after 16 s, where one wait is what it needs."""
    daemon, _ = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    held = [alert(f"held{i}") for i in range(6)]
    try:
        for a in held:  # claimed by a delivery that died before it settled them
            assert daemon.store.claim_alert_episode(
                fingerprint=a["fingerprint"],
                starts_at=FIRING_AT,
                model=MODEL,
                alertname=a["labels"]["alertname"],
                labels=a["labels"],
            )
        fake = _FakeTime()
        summary = handle_alerts(
            daemon.app.ctx, payload(*held, alert("free")), clock=fake.clock, sleep=fake.sleep
        )
        assert summary["busy"] == ["TunewatchDriftHigh"] * len(held)
        assert CLAIM_WAIT_S <= fake.slept <= CLAIM_WAIT_S + 0.1, fake.slept
        assert job_fingerprints(daemon) == ["free"]
    finally:
        daemon.close()


class _LiveHolder(_FakeTime):
    """Fake time in which a live delivery holding some of the episodes decides one of them
    (its job queued, the episode settled) each time the code under test sleeps."""

    def __init__(self, daemon: Daemon, held: list[dict[str, Any]]) -> None:
        super().__init__()
        self.daemon = daemon
        self.claims: list[tuple[dict[str, Any], str]] = []
        for a in held:
            claim = daemon.store.claim_alert_episode(
                fingerprint=a["fingerprint"],
                starts_at=FIRING_AT,
                model=MODEL,
                alertname=a["labels"]["alertname"],
                labels=a["labels"],
            )
            assert claim is not None
            self.claims.append((a, claim))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.claims:
            return
        a, claim = self.claims.pop(0)
        fp = a["fingerprint"]
        outcome = self.daemon.dispatcher.handle(
            MODEL,
            "alert_received",
            {"fingerprint": fp, "startsAt": FIRING_AT, "labels": a["labels"]},
            dedupe_key=dedupe_key(fp, FIRING_AT),
        )
        self.daemon.store.settle_alert_episode(
            fingerprint=fp, starts_at=FIRING_AT, claim=claim, decision=outcome.describe()
        )


class _SlowDispatcher(Dispatcher):
    """A dispatcher whose every decision takes ``seconds`` on the fake clock, as one on a
    loaded store does."""

    def __init__(self, daemon: Daemon, fake: _FakeTime, seconds: float) -> None:
        super().__init__(daemon.store, daemon.config)
        self.fake = fake
        self.seconds = seconds

    def handle(self, *args: Any, **kwargs: Any) -> ActionOutcome:
        self.fake.now += self.seconds
        return super().handle(*args, **kwargs)


def test_an_episode_a_live_delivery_settles_is_waited_for_however_long_the_group_took(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The wait ran to a deadline set at the delivery's first held episode, and deciding its
    other alerts used it up: two overlapping deliveries of a large group answered 503 after
    ~2 s although every claim they met settled within milliseconds."""
    daemon, _ = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    try:
        fake = _LiveHolder(daemon, [alert("heldA"), alert("heldB")])
        ctx = dataclasses.replace(daemon.app.ctx, dispatcher=_SlowDispatcher(daemon, fake, 1.5))
        group = payload(alert("heldA"), alert("free1"), alert("free2"), alert("heldB"))
        summary = handle_alerts(ctx, group, clock=fake.clock, sleep=fake.sleep)
        assert summary["busy"] == [] and summary["new_episodes"] == 2, summary
        assert fake.claims == []  # it waited for both held episodes, and both were decided
        # one job for the model: the other episodes were its duplicates
        assert len(job_fingerprints(daemon)) == 1
    finally:
        daemon.close()


def test_repeated_deliveries_of_a_suppressed_episode_record_its_event_and_suppression_once(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Each delivery of a still-firing alert whose retune the quota held recorded
    `alert_received` and `action_suppressed` again (and counted the event again in
    tunewatch_events_total): an hour of 5-minute repeats wrote 12 of each per episode."""
    daemon, tokens = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    group = payload(alert("fp1"), alert("fp2"), alert("fp3"))
    try:
        with BackgroundServer(daemon.app) as server:

            def deliver_group(body: dict[str, Any]) -> list[int]:
                r = httpx.post(
                    f"{server.url}/v1/alerts/alertmanager",
                    json=body,
                    headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
                )
                assert r.status_code == 200, r.text
                jobs: list[int] = r.json()["jobs"]
                return jobs

            def deliver() -> list[int]:
                return deliver_group(group)

            def finish_jobs() -> None:
                for job in daemon.store.list_jobs(model=MODEL):
                    if job.status == "queued":
                        daemon.store.finish_job(job.id, status="succeeded", result={})

            [_] = deliver_group(payload(alert("fp1")))  # fp1 queued, then done
            finish_jobs()
            blocker = _hold_the_quota(daemon)
            assert deliver() == []  # fp2 and fp3 suppressed by the quota
            for _ in range(5):
                assert deliver() == []  # the quota still holds them: nothing recorded
            daemon.store.finish_job(blocker, status="succeeded", result={})
            # fp2 gets its job, queued after fp3 was received: fp3 is settled by it
            assert len(deliver()) == 1
            assert deliver() == []
            finish_jobs()
            assert deliver() == []
            assert daemon.scheduler.event_counts is not None  # the leader counts the events
            daemon.scheduler.event_counts.poll()
            metrics = httpx.get(f"{server.url}/metrics").text
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=1000)]
        assert sorted(events) == sorted(
            ["alert_received"] * 3
            + ["action_taken"] * 2
            + ["action_suppressed"] * 2
            + ["action_duplicate"]
        )
        counted = f'tunewatch_events_total{{model="{MODEL}",type="alert_received"}} 3.0'
        assert counted in metrics.splitlines()
        assert job_fingerprints(daemon) == ["fp1", "fp2"]
    finally:
        daemon.close()


def test_concurrent_deliveries_of_an_owed_episode_queue_and_record_its_job_once(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    ctx = daemon.app.ctx
    try:
        blocker = _fp2_owed_to_the_quota(daemon, lambda body: handle_alerts(ctx, body))
        daemon.store.finish_job(blocker, status="succeeded", result={})  # room for fp2
        start = threading.Barrier(8)
        summaries: list[dict[str, Any]] = []

        def deliver() -> None:
            start.wait()
            summaries.append(handle_alerts(ctx, payload(alert("fp1"), alert("fp2"))))

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(summaries) == 8 and sum(len(s["jobs"]) for s in summaries) == 1
        assert all(s["busy"] == [] for s in summaries)
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == sorted(
            ["alert_received"] * 2 + ["action_taken"] * 2 + ["action_suppressed"]
        )
        assert job_fingerprints(daemon) == ["fp1", "fp2"]
    finally:
        daemon.close()


class _DeliveredAgainWhileQueueing(Dispatcher):
    """Delivers the alert again (Alertmanager's next group, an HA peer's) once the first
    delivery retrying the owed retune has queued its job, before it settled the episode."""

    def __init__(self, daemon: Daemon, fingerprint: str) -> None:
        super().__init__(daemon.store, daemon.config)
        self._daemon, self._fingerprint = daemon, fingerprint
        self.again: list[dict[str, Any]] = []

    def queue_owed(self, *args: Any, **kwargs: Any) -> ActionOutcome:
        outcome = super().queue_owed(*args, **kwargs)
        if not self.again:
            ctx = self._daemon.app.ctx
            ticks = iter(range(1_000))  # a clock on which each pause takes a second
            self.again.append(
                handle_alerts(
                    ctx,
                    payload(alert(self._fingerprint)),
                    clock=lambda: float(next(ticks)),
                    sleep=lambda _: None,
                )
            )
        return outcome


def test_a_delivery_while_an_owed_retune_is_queued_waits_and_records_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Both deliveries took the owed episode; the second found the first's job (a
    duplicate) and settled the episode first, so an ``action_duplicate`` stood beside the
    first delivery's ``action_taken`` (CI saw it once in 8 concurrent deliveries)."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    ctx = daemon.app.ctx
    try:
        blocker = _fp2_owed_to_the_quota(daemon, lambda body: handle_alerts(ctx, body))
        daemon.store.finish_job(blocker, status="succeeded", result={})  # room for fp2
        again = _DeliveredAgainWhileQueueing(daemon, "fp2")
        retrying = dataclasses.replace(ctx, dispatcher=again)
        assert len(handle_alerts(retrying, payload(alert("fp2")))["jobs"]) == 1
        assert [s["busy"] for s in again.again] == [
            ["TunewatchDriftHigh"]
        ]  # held: Alertmanager retries
        actions = [
            e.type for e in daemon.store.list_events(model=MODEL, limit=100) if "action" in e.type
        ]
        assert sorted(actions) == ["action_suppressed", "action_taken", "action_taken"]
        assert handle_alerts(ctx, payload(alert("fp2")))["jobs"] == []  # the retry: decided
        assert job_fingerprints(daemon) == ["fp1", "fp2"]
    finally:
        daemon.close()


class _ResolvedWhileDeciding(Dispatcher):
    """Delivers the alert's resolve (another replica's, an HA peer's) while the first
    firing delivery decides its episode."""

    def __init__(self, daemon: Daemon, fingerprint: str) -> None:
        super().__init__(daemon.store, daemon.config)
        self._daemon, self._fingerprint = daemon, fingerprint

    def handle(self, *args: Any, **kwargs: Any) -> ActionOutcome:
        outcome = super().handle(*args, **kwargs)
        resolve = payload(alert(self._fingerprint, status="resolved"))
        handle_alerts(self._daemon.app.ctx, resolve)
        return outcome


def test_an_owed_episode_that_resolved_while_it_was_decided_queues_no_retune(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """The resolve came while the first delivery decided (the quota suppressed its
    retune): the episode was left resolved with the owed marker, and a stale firing
    delivery (a retry, an HA peer's) later queued a retune for the resolved alert."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    ctx = daemon.app.ctx
    try:
        assert len(handle_alerts(ctx, payload(alert("other")))["jobs"]) == 1  # the quota
        deciding = dataclasses.replace(ctx, dispatcher=_ResolvedWhileDeciding(daemon, "fp1"))
        assert handle_alerts(deciding, payload(alert("fp1")))["jobs"] == []
        for job in daemon.store.list_jobs(model=MODEL):
            daemon.store.finish_job(job.id, status="succeeded", result={})
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []  # stale
        assert job_fingerprints(daemon) == ["other"]
    finally:
        daemon.close()


def test_an_owed_job_queued_by_a_delivery_that_then_failed_is_recorded_by_the_retry(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later delivery queued the owed retune, then the store failed before it settled
    the episode (503; Alertmanager retries). The retry found the job (a duplicate),
    settled the episode and recorded nothing: no event said a job was queued for it."""
    daemon, _ = retune_daemon(trained, tmp_path, None, quota=1, cooldown=0)
    ctx, store = daemon.app.ctx, daemon.store
    try:
        blocker = _fp2_owed_to_the_quota(daemon, lambda body: handle_alerts(ctx, body))
        store.finish_job(blocker, status="succeeded", result={})  # room for fp2
        settle = store.settle_alert_episode

        def failing_once(**kwargs: Any) -> bool:
            if (kwargs["decision"] or "").startswith("retune taken"):
                monkeypatch.setattr(store, "settle_alert_episode", settle)
                raise StoreUnavailableError("store settle_alert_episode: database is locked")
            return settle(**kwargs)

        monkeypatch.setattr(store, "settle_alert_episode", failing_once)
        with pytest.raises(StoreUnavailableError):
            handle_alerts(ctx, payload(alert("fp2")))
        handle_alerts(ctx, payload(alert("fp2")))  # Alertmanager's retry
        [job] = [j for j in store.list_jobs(model=MODEL) if j.trigger["fingerprint"] == "fp2"]
        actions = [
            e for e in store.list_events(model=MODEL, limit=100) if e.type.startswith("action_")
        ]
        assert any(e.payload.get("job") == job.id for e in actions), actions
    finally:
        daemon.close()


def test_an_owed_retry_whose_delivery_died_is_owed_again_once_its_claim_times_out(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A delivery claimed the owed episode to queue its retune and died: deliveries wait
    for the claim (503), and once it times out the episode is owed again, so the next
    delivery queues the job without recording the alert a second time."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    ctx, store = daemon.app.ctx, daemon.store
    try:
        blocker = _fp2_owed_to_the_quota(daemon, lambda body: handle_alerts(ctx, body))
        store.finish_job(blocker, status="succeeded", result={})  # room for fp2
        dead = store.claim_owed_alert_episode(fingerprint="fp2", starts_at=FIRING_AT, owed=_OWED)
        assert dead is not None
        time = _FakeTime()
        held = handle_alerts(ctx, payload(alert("fp2")), clock=time.clock, sleep=time.sleep)
        assert held["busy"] == ["TunewatchDriftHigh"] and held["jobs"] == []
        timed_out = store.claim_alert_episode(
            fingerprint="fp2",
            starts_at=FIRING_AT,
            model=MODEL,
            alertname="TunewatchDriftHigh",
            labels=alert("fp2")["labels"],
            stale_after=timedelta(0),
        )
        assert timed_out is None  # owed again, not taken as a new episode
        assert len(handle_alerts(ctx, payload(alert("fp2")))["jobs"]) == 1
        events = [e.type for e in store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == sorted(
            ["alert_received"] * 2 + ["action_taken"] * 2 + ["action_suppressed"]
        )
    finally:
        daemon.close()


def _resolved_earlier(daemon: Daemon, by: timedelta) -> None:
    """Move every resolved episode's resolve ``by`` into the past, as if that long had
    passed since (a firing delivery after a resolve is timed by the database's clock)."""
    with daemon.store.engine.begin() as conn:
        c = alert_episodes.c
        resolved = conn.execute(
            select(c.fingerprint, c.starts_at, c.resolved_at).where(c.resolved_at.is_not(None))
        ).all()
        for row in resolved:
            conn.execute(
                update(alert_episodes)
                .where(c.fingerprint == row.fingerprint, c.starts_at == row.starts_at)
                .values(resolved_at=row.resolved_at - by)
            )


def _finish_jobs(daemon: Daemon) -> None:
    for job in daemon.store.list_jobs(model=MODEL):
        if job.status == "queued":
            daemon.store.finish_job(job.id, status="succeeded", result={})


def test_an_episode_alertmanager_fires_again_after_resolving_it_gets_its_owed_retune(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Alertmanager resolves an alert whose sender stopped refreshing it past its endsAt (a
    Prometheus restart with a long WAL replay, an outage) and, once the sender is back,
    fires it again with the same fingerprint and startsAt. The resolve closed the owed
    episode for good: every later delivery of the firing alert was dropped, and the
    retune it was owed was never queued."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=1, cooldown=0)
    ctx = daemon.app.ctx
    firing = payload(alert("fp1"), alert("fp2"))
    try:
        blocker = _fp2_owed_to_the_quota(daemon, lambda body: handle_alerts(ctx, body))
        resolved = payload(alert("fp1", status="resolved"), alert("fp2", status="resolved"))
        assert handle_alerts(ctx, resolved)["ignored"] == []
        daemon.store.finish_job(blocker, status="succeeded", result={})  # room for fp2
        # within REFIRE_AFTER of the resolve: a stale delivery (a retry, an HA peer's)
        assert handle_alerts(ctx, firing)["jobs"] == []
        _resolved_earlier(daemon, REFIRE_AFTER + timedelta(seconds=1))
        # fired again: fp2 gets its owed retune; fp1 was decided (its job queued), no second
        assert len(handle_alerts(ctx, firing)["jobs"]) == 1
        assert handle_alerts(ctx, firing)["jobs"] == []
        assert job_fingerprints(daemon) == ["fp1", "fp2"]
        events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
        assert sorted(events) == sorted(  # fp2's alert was recorded once, when it first fired
            ["alert_received"] * 2 + ["action_taken"] * 2 + ["action_suppressed"]
        )
    finally:
        daemon.close()


def test_an_alert_resolved_before_it_was_seen_firing_is_acted_on_when_it_fires_again(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """An episode stored resolved, never decided, that Alertmanager fires again later is a
    new episode to act on, like one first seen firing."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    ctx = daemon.app.ctx
    try:
        handle_alerts(ctx, payload(alert("fp1", status="resolved")))
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []  # stale
        _resolved_earlier(daemon, REFIRE_AFTER + timedelta(seconds=1))
        again = handle_alerts(ctx, payload(alert("fp1")))
        assert again["new_episodes"] == 1 and len(again["jobs"]) == 1
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []
        assert job_fingerprints(daemon) == ["fp1"]
        c = alert_episodes.c
        with daemon.store.engine.connect() as conn:  # stored as one first seen firing
            row = conn.execute(select(c.status, c.model, c.alertname, c.labels)).one()
        assert tuple(row) == ("firing", MODEL, "TunewatchDriftHigh", alert("fp1")["labels"])
    finally:
        daemon.close()


def test_a_resolve_is_timed_by_the_database_clock_not_the_hosts(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resolve was stamped by this host's clock and aged by the database's: on a host
    whose clock ran behind the database's by more than REFIRE_AFTER, the stale firing
    delivery that comes right after a resolve (an HA peer's) reopened the episode."""
    host_clock = _alert_episodes.utcnow
    monkeypatch.setattr(_alert_episodes, "utcnow", lambda: host_clock() - timedelta(hours=1))
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    ctx = daemon.app.ctx
    try:
        handle_alerts(ctx, payload(alert("fp1", status="resolved")))
        assert handle_alerts(ctx, payload(alert("fp1")))["jobs"] == []  # stale
        assert job_fingerprints(daemon) == []
    finally:
        daemon.close()
