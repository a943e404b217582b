"""A replica stopped (SIGSTOP, a VM pause) inside its lease transaction holds up no other
replica on PostgreSQL: the upsert locked the lease row even when its ``WHERE`` was false,
every replica ran it at every tick, and nothing ended a transaction left idle, so a
stopped leader kept every other replica from leading for as long as it was stopped, and a
stopped follower made the leader's renewals time out until its lease ran out.

The stopped process is this test's own scheduler, held inside its lease transaction by a
``commit`` listener that waits on an event: from the server's side, a session idle in a
transaction, as a stopped process's is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tunewatch._config import Config, build_config
from tunewatch._errors import StoreUnavailableError
from tunewatch._scheduler import LEASE, Scheduler
from tunewatch.store import Store
from tunewatch.store._schema import leases

pytestmark = pytest.mark.postgres

TTL_S = 30.0
#: The stopped replica's lock timeout: a transaction of its store left idle is ended by
#: the server after this + 5 s.
STOPPED_LOCK_TIMEOUT_S = 1.0
#: The other replica's: it waits this long for the stopped one's lock, well past the 6 s
#: after which the server ends the stopped one's transaction (and with no such limit the
#: test fails when the wait times out, rather than hanging).
WAITING_LOCK_TIMEOUT_S = 20.0
#: How long the test waits for a thread to reach a step (not a limit on anything measured).
STEP_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, pg_url: str) -> Config:
    return build_config(
        {
            "data_dir": str(tmp_path),
            "store": {"url": pg_url},
            "scheduler": {"lease_ttl_s": TTL_S},
        },
        env={},
    )


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[Store, Store]]:
    """Two replicas' stores on one database: the one that stops, and the other."""
    stopped = Store.open(pg_url, lock_timeout_s=STOPPED_LOCK_TIMEOUT_S)
    other = Store.open(pg_url, lock_timeout_s=WAITING_LOCK_TIMEOUT_S)
    try:
        yield stopped, other
    finally:
        other.close()
        stopped.close()


class StopAtCommit:
    """Holds the next transaction committed on ``engine`` before its ``COMMIT`` until
    ``resume`` is set, as a process stopped between its statements and the commit;
    ``reached`` is set once it is held."""

    def __init__(self, engine: sa.Engine) -> None:
        self.reached = threading.Event()
        self.resume = threading.Event()
        self._pending = True
        self._engine = engine
        sa.event.listen(engine, "commit", self._hold)

    def _hold(self, _conn: Any) -> None:
        if not self._pending:
            return
        self._pending = False
        self.reached.set()
        self.resume.wait(STEP_S * 4)

    def remove(self) -> None:
        self.resume.set()
        sa.event.remove(self._engine, "commit", self._hold)


def _lease(store: Store) -> tuple[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.name == LEASE)
        ).first()
    return None if row is None else (row.holder, row.expires_at)


def _holder(store: Store) -> str | None:
    lease = _lease(store)
    return None if lease is None else lease[0]


@pytest.mark.slow
def test_a_leader_stopped_inside_its_renewal_is_ended_and_another_replica_leads(
    tmp_path: Path, pg_url: str, stores: tuple[Store, Store]
) -> None:
    """The leader stops inside a renewal that came after its lease ran out (it is renewed
    a third of the lease's life before): the other replica's upsert waited for its lock
    until its own lock timeout, at every tick, for as long as the leader was stopped. The
    server now ends a transaction left idle for the lock timeout + 5 s, releasing the
    lock, and the other replica takes the lease in the same attempt."""
    stopped_store, other_store = stores
    config = _config(tmp_path, pg_url)
    stopped_clock = FakeClock()
    stopped = Scheduler(
        store=stopped_store, config=config, jobs=[], holder="stopped", clock=stopped_clock
    )
    other = Scheduler(store=other_store, config=config, jobs=[], holder="other", clock=FakeClock())
    stopped._lead()
    assert stopped.leader
    with other_store.engine.begin() as conn:  # the lease has run out meanwhile
        conn.execute(
            sa.update(leases)
            .where(leases.c.name == LEASE)
            .values(expires_at=sa.func.now() - timedelta(minutes=1))
        )
    stop = StopAtCommit(stopped_store.engine)
    renewal = threading.Thread(target=stopped._lead)
    try:
        renewal.start()
        assert stop.reached.wait(STEP_S), "the leader's renewal never reached its commit"
        other._lead()  # waits on the stopped leader's lock until the server ends it
        assert other.leader
        assert _holder(other_store) == "other"
    finally:
        stopped_clock.now += 10 * TTL_S  # the time it was stopped for, by its own clock
        stop.remove()
        renewal.join(STEP_S)
    assert not renewal.is_alive()
    assert not stopped.leader  # its renewal failed (its session ended) after its lease ran out
    stopped._lead()  # continued, it is a follower: the other replica's lease is unexpired
    assert not stopped.leader
    assert _holder(stopped_store) == "other"


def test_a_follower_tick_does_not_lock_a_lease_held_and_unexpired(
    tmp_path: Path, pg_url: str, stores: tuple[Store, Store]
) -> None:
    """A follower stopped inside its tick's lease transaction made the leader's renewals
    wait out their lock timeout, every one, for as long as it was stopped: its upsert
    locked the row though its ``WHERE`` (expired, or ours) was false. It now only reads a
    lease another holder holds unexpired, so the leader renews while the follower's
    transaction is still open."""
    leader_store, follower_store = stores  # the leader's renewals wait 1 s for a lock
    config = _config(tmp_path, pg_url)
    leader = Scheduler(store=leader_store, config=config, jobs=[], holder="leader")
    follower = Scheduler(store=follower_store, config=config, jobs=[], holder="follower")
    leader._lead()
    assert leader.leader
    before = _lease(leader_store)
    renewals: list[bool | StoreUnavailableError] = []

    def renew_meanwhile(_conn: Any) -> None:  # the follower's transaction is still open
        if renewals:
            return
        try:
            renewals.append(leader_store.acquire_lease(LEASE, leader.holder, ttl_s=TTL_S))
        except StoreUnavailableError as exc:
            renewals.append(exc)

    sa.event.listen(follower_store.engine, "commit", renew_meanwhile)
    try:
        follower._lead()
    finally:
        sa.event.remove(follower_store.engine, "commit", renew_meanwhile)
    assert not follower.leader
    assert renewals == [True], renewals
    after = _lease(leader_store)
    assert before is not None and after is not None
    assert after[0] == "leader" and after[1] > before[1]
