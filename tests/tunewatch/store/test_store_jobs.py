"""Jobs and alert episodes — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tunewatch._errors import ConflictError
from tunewatch.store import Store, _jobs
from tunewatch.store._schema import alert_episodes, jobs


def test_concurrent_jobs_with_one_dedupe_key_create_one(model_store: Store) -> None:
    created: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        _, new = model_store.create_job(
            model="m", kind="retune", trigger={"event": "x"}, spec={}, dedupe_key="alert:fp:t0"
        )
        with lock:
            created.append(new)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1
    assert len(model_store.list_jobs(model="m")) == 1


def test_job_lifecycle_claim_progress_finish(model_store: Store) -> None:
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={"trials": 5})
    assert model_store.count_active_jobs() == 1
    running = model_store.claim_job(job.id, "w1")
    assert running.status == "running" and running.started_at is not None
    model_store.update_job_progress(job.id, {"trials_done": 2, "best": 0.31})
    assert model_store.get_job(job.id).progress == {"trials_done": 2, "best": 0.31}
    done = model_store.finish_job(job.id, status="succeeded", result={"version": 3})
    assert done.status == "succeeded" and done.result == {"version": 3}
    assert model_store.count_active_jobs() == 0
    with pytest.raises(ConflictError) as info:
        model_store.claim_job(job.id, "w2")
    assert info.value.code == "job_finished"


def test_a_finished_job_keeps_its_progress_and_heartbeat(model_store: Store) -> None:
    """A worker that joined the job's study went on reporting after the worker that
    registered had finished it: its progress (2 trials, a better best) contradicted the
    job's result (1 trial)."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "w1")
    model_store.update_job_progress(job.id, {"trials": 1, "best_value": 0.5345})
    done = model_store.finish_job(job.id, status="succeeded", result={"n_trials": 1})
    model_store.update_job_progress(job.id, {"trials": 2, "best_value": 0.5328})
    model_store.heartbeat_job(job.id)
    after = model_store.get_job(job.id)
    # as its worker left it, the phase its end names
    assert after.progress == {"trials": 1, "best_value": 0.5345, "phase": "done"}
    assert after.heartbeat_at == done.heartbeat_at


EPISODE: dict[str, Any] = {
    "fingerprint": "fp",
    "starts_at": "t0",
    "model": "m",
    "alertname": "A",
    "labels": {"model": "m"},
}


def test_alert_episode_is_claimed_by_one_delivery_until_a_final_decision(
    model_store: Store,
) -> None:
    first = model_store.claim_alert_episode(**EPISODE)
    assert first is not None
    assert model_store.claim_alert_episode(**EPISODE) is None  # held by the first delivery
    # a suppressed action releases it: a later delivery may claim it again
    assert model_store.settle_alert_episode(
        fingerprint="fp", starts_at="t0", claim=first, decision=None
    )
    second = model_store.claim_alert_episode(**EPISODE)
    assert second is not None and second != first
    assert model_store.settle_alert_episode(
        fingerprint="fp", starts_at="t0", claim=second, decision="retune taken (job 1)"
    )
    assert model_store.claim_alert_episode(**EPISODE) is None  # decided for good
    assert model_store.resolve_alert_episode(fingerprint="fp", starts_at="t0") == "resolved"
    assert model_store.resolve_alert_episode(fingerprint="never", starts_at="t0") == "unseen"


def test_a_claim_whose_delivery_died_is_retaken_after_the_timeout(model_store: Store) -> None:
    dead = model_store.claim_alert_episode(**EPISODE)
    assert dead is not None
    assert model_store.claim_alert_episode(**EPISODE, stale_after=timedelta(hours=1)) is None
    retaken = model_store.claim_alert_episode(**EPISODE, stale_after=timedelta(0))
    assert retaken is not None and retaken != dead
    # the first delivery, had it only been slow, can no longer decide or release
    assert not model_store.settle_alert_episode(
        fingerprint="fp", starts_at="t0", claim=dead, decision=None
    )
    assert model_store.claim_alert_episode(**EPISODE, stale_after=timedelta(hours=1)) is None
    assert model_store.settle_alert_episode(
        fingerprint="fp", starts_at="t0", claim=retaken, decision="retune duplicate (job 1)"
    )


def test_a_resolved_episode_is_not_claimed(model_store: Store) -> None:
    claim = model_store.claim_alert_episode(**EPISODE)
    assert claim is not None
    model_store.settle_alert_episode(fingerprint="fp", starts_at="t0", claim=claim, decision=None)
    assert model_store.resolve_alert_episode(fingerprint="fp", starts_at="t0") == "resolved"
    assert model_store.claim_alert_episode(**EPISODE) is None


def test_an_episode_resolved_before_it_was_seen_firing_is_not_claimed(
    model_store: Store,
) -> None:
    """Alertmanager never fires an episode again once it resolved: a firing delivery that
    comes after the resolve (a retry, an HA peer's) is stale. The resolve of an episode
    never seen firing stored nothing, and the late firing delivery claimed it as new."""
    assert model_store.resolve_alert_episode(fingerprint="fp", starts_at="t0") == "unseen"
    assert model_store.claim_alert_episode(**EPISODE) is None
    assert not model_store.alert_episode_claimed(fingerprint="fp", starts_at="t0")
    again = model_store.resolve_alert_episode(fingerprint="fp", starts_at="t0")
    assert again == "already_resolved"  # delivered again: ignored once, by the first
    other = EPISODE | {"starts_at": "t1"}  # the alert firing anew is another episode
    assert model_store.claim_alert_episode(**other) is not None


def test_concurrent_deliveries_claim_an_episode_once(model_store: Store) -> None:
    start = threading.Barrier(8)
    claims: list[str | None] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        claim = model_store.claim_alert_episode(**EPISODE)
        with lock:
            claims.append(claim)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claims) == 8 and len([c for c in claims if c is not None]) == 1


def test_a_running_job_whose_worker_stopped_heartbeating_is_queued_again_with_its_crash_counted(
    model_store: Store,
) -> None:
    """Failing it lost the retune and every trial its study had completed: the next
    worker resumes the study instead. It keeps its quota slot, and says how it died."""
    quiet, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    alive, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    queued, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(quiet.id, "w-dead")
    with model_store.engine.begin() as conn:  # its last heartbeat ten minutes ago
        at = datetime.now(UTC) - timedelta(minutes=10)
        conn.execute(update(jobs).where(jobs.c.id == quiet.id).values(heartbeat_at=at))
    model_store.claim_job(alive.id, "w-alive")
    model_store.heartbeat_job(alive.id)
    # a minute: 0.2 s after a 0.3 s sleep read the live one as stale too on a loaded host
    [again] = model_store.requeue_stale_jobs(older_than=timedelta(minutes=1), max_crashes=3)
    assert (again.id, again.status, again.worker, again.heartbeat_at) == (
        quiet.id,
        "queued",
        None,
        None,
    )
    assert again.crashes == 1 and "w-dead" in (again.error or "")
    assert "presumed dead" in (again.error or "")
    assert model_store.get_job(alive.id).status == "running"
    assert model_store.get_job(queued.id).status == "queued"  # never claimed: not stale
    assert model_store.count_active_jobs() == 3
    assert model_store.requeue_stale_jobs(older_than=timedelta(minutes=1), max_crashes=3) == []


def test_a_job_whose_workers_keep_dying_is_failed_at_the_crash_limit_and_frees_its_slot(
    model_store: Store,
) -> None:
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    for n in (1, 2):
        model_store.claim_job(job.id, f"w-{n}")
        row = model_store.requeue_crashed_job(
            model_store.get_job(job.id), error=f"worker w-{n} killed", max_crashes=3
        )
        assert row is not None and (row.status, row.crashes) == ("queued", n)
    model_store.claim_job(job.id, "w-3")
    time.sleep(0.3)
    [failed] = model_store.requeue_stale_jobs(older_than=timedelta(seconds=0.2), max_crashes=3)
    assert (failed.status, failed.crashes) == ("failed", 3) and failed.finished_at is not None
    assert "w-3" in (failed.error or "") and "died 3 times: not queued again" in (
        failed.error or ""
    )
    assert model_store.count_active_jobs() == 0
    assert model_store.get_job(job.id).error == failed.error


def test_a_crash_is_not_counted_on_a_job_claimed_heartbeated_or_finished_meanwhile(
    model_store: Store,
) -> None:
    """The row read when the worker died is the one queued again: one another worker
    claimed since, or one that ended, is left as it is."""
    claimed, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    dead = model_store.claim_job(claimed.id, "w-dead")
    model_store.claim_job(claimed.id, "w-joined")
    assert model_store.requeue_crashed_job(dead, error="killed", max_crashes=3) is None
    assert model_store.get_job(claimed.id).status == "running"
    ended, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    dead = model_store.claim_job(ended.id, "w-dead")
    model_store.finish_job(ended.id, status="succeeded", result={})
    assert model_store.requeue_crashed_job(dead, error="killed", max_crashes=3) is None
    assert model_store.get_job(ended.id).crashes == 0


def _host_clock(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """This process's wall clock runs ``offset`` off (another host's, say)."""
    monkeypatch.setattr(_jobs, "utcnow", lambda: datetime.now(UTC) + offset)


def test_job_liveness_is_judged_by_the_database_s_clock_not_the_hosts(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats and the staleness test used each process's own clock: a live worker on a
    host two minutes behind the leader's was failed as stale at the leader's next tick
    (freeing its quota slot while it ran), and a dead one on a host ahead was not."""
    behind, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    ahead, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    _host_clock(monkeypatch, timedelta(minutes=2))  # the dead worker's host, before it died
    model_store.claim_job(ahead.id, "ahead:1")
    model_store.heartbeat_job(ahead.id)
    # the dead worker's last heartbeat 90 s back by the database's clock (it was written
    # 2 min ahead by its host's: read by the host's, it would still look 30 s young)
    last = model_store.get_job(ahead.id).heartbeat_at
    assert last is not None
    with model_store.engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == ahead.id)
            .values(heartbeat_at=last - timedelta(seconds=90))
        )
    _host_clock(monkeypatch, -timedelta(minutes=2))  # the live worker's host
    model_store.claim_job(behind.id, "behind:1")
    model_store.heartbeat_job(behind.id)
    model_store.update_job_progress(behind.id, {"trials": 1})
    _host_clock(monkeypatch, timedelta(0))  # the leader's host
    stale = model_store.requeue_stale_jobs(older_than=timedelta(minutes=1), max_crashes=3)
    assert [j.id for j in stale] == [ahead.id]
    assert model_store.get_job(behind.id).status == "running"
    assert model_store.count_active_jobs() == 2  # ahead is queued again


def test_heartbeats_written_before_the_database_s_clock_was_used_still_compare(
    model_store: Store,
) -> None:
    """Rows from earlier releases hold heartbeats the process wrote with its own clock."""
    old, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    recent, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    for job in (old, recent):
        model_store.claim_job(job.id, "w")
    now = datetime.now(UTC)
    with model_store.engine.begin() as conn:  # as a worker of an earlier release wrote them
        for job, at in ((old, now - timedelta(minutes=10)), (recent, now - timedelta(seconds=5))):
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(heartbeat_at=at))
    stale = model_store.requeue_stale_jobs(older_than=timedelta(minutes=1), max_crashes=3)
    assert [j.id for j in stale] == [old.id]
    assert model_store.get_job(recent.id).status == "running"


def test_alert_claims_are_timed_by_the_database_s_clock_not_the_hosts(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims were stamped and aged by each replica's own clock: a live claim from a host
    ten minutes behind was taken over at once (both deliveries dispatched, the first one's
    outcome was lost), and a dead one from a host ahead could not be retaken."""
    live = {**EPISODE, "fingerprint": "live"}
    _host_clock(monkeypatch, -timedelta(minutes=10))  # the claiming replica's host
    claim = model_store.claim_alert_episode(**live)
    assert claim is not None
    for offset in (timedelta(0), timedelta(minutes=10)):  # other replicas, while it decides
        _host_clock(monkeypatch, offset)
        assert model_store.claim_alert_episode(**live) is None
    assert model_store.settle_alert_episode(
        fingerprint="live", starts_at="t0", claim=claim, decision="retune taken (job 1)"
    )

    dead = {**EPISODE, "fingerprint": "dead"}
    _host_clock(monkeypatch, timedelta(minutes=10))  # the host of a delivery that then died
    gone = model_store.claim_alert_episode(**dead)
    assert gone is not None
    _host_clock(monkeypatch, -timedelta(minutes=10))  # the next delivery's host
    assert model_store.claim_alert_episode(**dead, stale_after=timedelta(hours=1)) is None
    retaken = model_store.claim_alert_episode(**dead, stale_after=timedelta(0))
    assert retaken is not None and retaken != gone


def test_claims_written_before_the_database_s_clock_was_used_still_age(
    model_store: Store,
) -> None:
    """An earlier release stamped claims with its host's clock, in the same text."""
    for fingerprint in ("old", "recent"):
        assert model_store.claim_alert_episode(**{**EPISODE, "fingerprint": fingerprint})
    now = datetime.now(UTC)
    with model_store.engine.begin() as conn:  # as a delivery of an earlier release wrote them
        for fingerprint, at in (("old", now - timedelta(minutes=10)), ("recent", now)):
            conn.execute(
                update(alert_episodes)
                .where(alert_episodes.c.fingerprint == fingerprint)
                .values(decision=f"claimed at {at.isoformat()} 0123456789abcdef")
            )
    assert model_store.claim_alert_episode(**{**EPISODE, "fingerprint": "old"}) is not None
    assert model_store.claim_alert_episode(**{**EPISODE, "fingerprint": "recent"}) is None


def test_a_job_queued_again_as_stale_is_finished_by_its_worker_if_alive_after_all(
    model_store: Store,
) -> None:
    """A worker too slow to heartbeat was not dead: its outcome is the job's."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "w-slow")
    time.sleep(0.3)
    [again] = model_store.requeue_stale_jobs(older_than=timedelta(seconds=0.2), max_crashes=3)
    assert again.status == "queued"
    done = model_store.finish_job(job.id, status="succeeded", result={"version": 2})
    assert (done.status, done.error, done.result) == ("succeeded", None, {"version": 2})


def test_a_job_failed_as_stale_stays_failed_when_its_worker_finishes_late(
    model_store: Store,
) -> None:
    """The launcher failed a job whose worker was slow to heartbeat, at its crash limit
    (the failure event fired, its quota slot went to another job); the worker then
    finished it as succeeded."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "w-slow")
    time.sleep(0.3)
    [failed] = model_store.requeue_stale_jobs(older_than=timedelta(seconds=0.2), max_crashes=1)
    assert failed.status == "failed"
    with pytest.raises(ConflictError) as info:
        model_store.finish_job(job.id, status="succeeded", result={"version": 2})
    assert info.value.code == "job_finished"
    again = model_store.get_job(job.id)
    assert (again.status, again.error, again.result) == ("failed", failed.error, None)


def _race(store: Store, n: int, **kwargs: Any) -> tuple[list[bool], list[str]]:
    """``n`` threads create a job at once (dedupe keys differ); ``(created, refused codes)``."""
    created: list[bool] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            _, new = store.create_job(
                model="m", kind="retune", trigger={}, spec={}, dedupe_key=f"k{i}", **kwargs
            )
        except ConflictError as exc:
            with lock:
                refused.append(exc.code)
            return
        with lock:
            created.append(new)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return created, refused


def test_simultaneous_jobs_never_overshoot_the_quota(model_store: Store) -> None:
    created, refused = _race(model_store, 8, max_active=2)
    assert created == [True, True] and refused == ["quota"] * 6
    assert model_store.count_active_jobs() == 2


def test_simultaneous_triggers_of_one_model_queue_one_job_in_its_cool_down(
    model_store: Store,
) -> None:
    """The cool-down was read and then acted on in separate transactions: simultaneous
    triggers (an alert and a drift event) each queued a job."""
    cooldown = timedelta(minutes=30)
    created, refused = _race(model_store, 6, max_active=100, cooldown=cooldown)
    assert created == [True] and refused == ["cooldown"] * 5
    _age_jobs(model_store, timedelta(minutes=31))  # the cool-down has passed
    _, new = model_store.create_job(
        model="m", kind="retune", trigger={}, spec={}, max_active=100, cooldown=cooldown
    )
    assert new


def _age_jobs(store: Store, by: timedelta) -> None:
    """Move model ``m``'s jobs ``by`` into the past, as if that long had passed since."""
    for job in store.list_jobs(model="m"):
        with store.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(created_at=job.created_at - by)
            )


def test_a_cool_down_is_timed_by_the_database_s_clock_not_the_hosts(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job was stamped by the clock of the host that queued it, and the cool-down's start
    came from the deciding host's: a job queued on a host 10 minutes slow was outside a
    5-minute cool-down the moment it was queued."""
    _host_clock(monkeypatch, -timedelta(minutes=10))  # the queueing host's
    model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    _host_clock(monkeypatch, timedelta(0))  # the deciding host's
    with pytest.raises(ConflictError) as info:
        model_store.create_job(
            model="m", kind="retune", trigger={}, spec={}, cooldown=timedelta(minutes=5)
        )
    assert info.value.code == "cooldown"


def test_jobs_queued_before_the_database_s_clock_was_used_still_cool_down(
    model_store: Store,
) -> None:
    """Rows from earlier releases hold the queue time the process wrote with its own clock."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})

    def queued(ago: timedelta) -> None:  # as a process of an earlier release wrote it
        with model_store.engine.begin() as conn:
            at = datetime.now(UTC) - ago
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(created_at=at))

    def again() -> bool:
        return model_store.create_job(
            model="m", kind="retune", trigger={}, spec={}, cooldown=timedelta(minutes=5)
        )[1]

    queued(timedelta(minutes=1))
    with pytest.raises(ConflictError, match="cooling down"):
        again()
    queued(timedelta(minutes=10))
    assert again()


@pytest.mark.postgres
def test_a_quota_check_does_not_wait_for_a_migration(pg_url: str) -> None:
    """Migrations and quota checks took the same advisory lock key: while any process
    migrated, every alert- or schedule-triggered retune waited, and failed 503 after the
    lock timeout."""
    import sqlalchemy as sa

    from tunewatch.store import _migrate

    store = Store.open(pg_url, lock_timeout_s=1)
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as migrating:  # what a migrator holds for its whole run
            migrating.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _migrate._PG_MIGRATION_LOCK}
            )
            job, created = store.create_job(
                model="m", kind="retune", trigger={}, spec={}, max_active=5
            )
        assert created and job.status == "queued"
    finally:
        engine.dispose()
        store.close()


def test_finishing_as_a_worker_leaves_a_job_another_worker_claimed_since(
    model_store: Store,
) -> None:
    """The launcher fails the job of a worker it reaped dead only while that worker holds
    it: one that another worker joined since (workers share a study) is that worker's."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "host:1")
    model_store.claim_job(job.id, "host:2")
    with pytest.raises(ConflictError) as info:
        model_store.finish_job(
            job.id, status="failed", error="dead", replacing=("running",), worker="host:1"
        )
    assert info.value.code == "job_claimed" and "'host:2', not 'host:1'" in info.value.message
    assert (model_store.get_job(job.id).status, model_store.get_job(job.id).error) == (
        "running",
        None,
    )
    failed = model_store.finish_job(
        job.id, status="failed", error="dead", replacing=("running",), worker="host:2"
    )
    assert (failed.status, failed.error) == ("failed", "dead")
    with pytest.raises(ConflictError) as info:
        model_store.finish_job(
            job.id, status="failed", error="again", replacing=("running",), worker="host:2"
        )
    assert info.value.code == "job_finished"
