"""What a redelivery of an Alertmanager group costs the store, counted in SQL statements on
the store's own engine: one whose episodes are all decided, resolved or held by a live
delivery writes nothing and reads a few statements per alert. It wrote two rows and ran
seven statements in five transactions per alert (a decided group of 1500 alerts took a
minute, and one of a few thousand outlasted Alertmanager's 5-minute notify timeout)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, update

from tests.tunewatch.api.alert_helpers import (
    FIRING_AT,
    alert,
    job_fingerprints,
    payload,
    retune_daemon,
)
from tests.tunewatch.conftest import MODEL
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import _PAUSE_S, CLAIM_WAIT_S, handle_alerts
from tunewatch.store import _alert_episodes
from tunewatch.store._engine import READ_ONLY_OPTION
from tunewatch.store._schema import alert_episodes

N = 50
WRITING = "writing transactions"
_WRITES = ("INSERT", "UPDATE", "DELETE", WRITING)
# Statements a redelivery may run per alert whose episode needs no decision: one look at
# the episode. Before the fix: seven (an INSERT and an UPDATE among them, in two writing
# transactions) and a look-up of the model.
_PER_ALERT = 1
# Per delivery: the database's time as it began, and the look-up of the model.
_PER_DELIVERY = 2


@contextmanager
def _statements(engine: Engine) -> Iterator[Counter[str]]:
    """The statements run on ``engine`` meanwhile, counted by their first keyword (``BEGIN``,
    which only SQLite sends as a statement, is left out), and its transactions that may
    write (``WRITING``: on SQLite, each takes the database's write lock)."""
    counts: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        keyword = statement.split(None, 1)[0].upper()
        if keyword != "BEGIN":
            counts[keyword] += 1

    def begin(conn: Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY_OPTION):
            counts[WRITING] += 1

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "begin", begin)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "begin", begin)


def _group(prefix: str) -> dict[str, Any]:
    return payload(*(alert(f"{prefix}{i:03d}") for i in range(N)))


def _events(daemon: Daemon) -> Counter[str]:
    return Counter(e.type for e in daemon.store.list_events(model=MODEL, limit=10 * N))


# a group decided: one job for the model, the other episodes its duplicates
_DECIDED = {"alert_received": N, "action_taken": 1, "action_duplicate": N - 1}


def test_a_redelivery_of_a_decided_group_writes_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=2 * N, cooldown=0)
    ctx = daemon.app.ctx
    group = _group("fp")
    try:
        first = handle_alerts(ctx, group)
        # one job for the model, the other episodes its duplicates
        assert first["new_episodes"] == N and len(first["jobs"]) == 1, first
        assert _events(daemon) == _DECIDED
        with _statements(daemon.store.engine) as counts:
            again = handle_alerts(ctx, group)
        assert again["new_episodes"] == 0 and again["jobs"] == [] and again["busy"] == []
        assert {k: counts[k] for k in _WRITES} == dict.fromkeys(_WRITES, 0), counts
        assert counts.total() - counts[WRITING] <= _PER_ALERT * N + _PER_DELIVERY, counts
        assert job_fingerprints(daemon) == [group["alerts"][0]["fingerprint"]]
        assert _events(daemon) == _DECIDED
    finally:
        daemon.close()


def test_a_stale_firing_redelivery_of_a_resolved_group_writes_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Within REFIRE_AFTER of the resolve a firing delivery is stale (a retry, an HA
    peer's): the episodes stay resolved, and nothing is written to find that out."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=2 * N, cooldown=0)
    ctx = daemon.app.ctx
    group = _group("fp")
    resolved = payload(*(alert(a["fingerprint"], status="resolved") for a in group["alerts"]))
    try:
        handle_alerts(ctx, group)
        handle_alerts(ctx, resolved)
        with _statements(daemon.store.engine) as counts:
            stale = handle_alerts(ctx, group)
        assert stale["new_episodes"] == 0 and stale["jobs"] == [] and stale["busy"] == []
        assert {k: counts[k] for k in _WRITES} == dict.fromkeys(_WRITES, 0), counts
        assert counts.total() - counts[WRITING] <= _PER_ALERT * N + _PER_DELIVERY, counts
        assert _events(daemon) == _DECIDED
    finally:
        daemon.close()


class _FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_redelivery_of_a_group_another_delivery_holds_writes_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A delivery holding the group's claims (live by the database's clock, and not given
    up on here: the fake clock runs out the wait) is waited for without a write."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=2 * N, cooldown=0)
    group = _group("held")
    try:
        for a in group["alerts"]:
            assert daemon.store.claim_alert_episode(
                fingerprint=a["fingerprint"],
                starts_at=FIRING_AT,
                model=MODEL,
                alertname=a["labels"]["alertname"],
                labels=a["labels"],
            )
        fake = _FakeTime()
        with _statements(daemon.store.engine) as counts:
            busy = handle_alerts(daemon.app.ctx, group, clock=fake.clock, sleep=fake.sleep)
        assert busy["busy"] == ["TunewatchDriftHigh"] * N and busy["jobs"] == []
        assert {k: counts[k] for k in _WRITES} == dict.fromkeys(_WRITES, 0), counts
        # the first held episode is tried at once and after each pause until the wait runs
        # out (one pause more for the float sums of the fake clock), the others once
        attempts = N + round(CLAIM_WAIT_S / _PAUSE_S) + 1
        assert counts.total() - counts[WRITING] <= _PER_ALERT * attempts + _PER_DELIVERY, counts
    finally:
        daemon.close()


def test_a_redelivery_still_takes_an_episode_a_dead_delivery_held(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Reading first changes nothing for an episode that needs a decision: one whose
    claim is older than CLAIM_TIMEOUT is taken over and decided, once."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=2 * N, cooldown=0)
    a = alert("dead")
    try:
        claim = daemon.store.claim_alert_episode(
            fingerprint="dead",
            starts_at=FIRING_AT,
            model=MODEL,
            alertname=a["labels"]["alertname"],
            labels=a["labels"],
        )
        assert claim is not None
        claimed_at = _alert_episodes._claimed_at(claim)
        assert claimed_at is not None
        dead = _alert_episodes._new_claim(claimed_at - 2 * _alert_episodes.CLAIM_TIMEOUT)
        with daemon.store.engine.begin() as conn:
            conn.execute(
                update(alert_episodes)
                .where(alert_episodes.c.fingerprint == "dead")
                .values(decision=dead)
            )
        taken = handle_alerts(daemon.app.ctx, payload(a))
        assert taken["new_episodes"] == 1 and len(taken["jobs"]) == 1, taken
        assert handle_alerts(daemon.app.ctx, payload(a))["jobs"] == []
        assert job_fingerprints(daemon) == ["dead"]
        assert _events(daemon) == {"alert_received": 1, "action_taken": 1}
    finally:
        daemon.close()
