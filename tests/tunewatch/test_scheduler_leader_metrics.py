"""Which replica leads the scheduler, as each says on /metrics and in its log.

Nothing a replica served said whether it led: only the store's lease row, which only SQL
reads. A process that runs the scheduler exports ``tunewatch_scheduler_leader`` (1 while
it holds the lease unexpired by its own clock) and when it last renewed it; a follower
logs the holder it follows. A leader whose lease ran out by its own clock (its renewals
stalled) exports none of the leader's figures: it kept exporting its alarm under the new
leader's, and the rules' ``max by (model)`` kept paging."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitor import ServingMetrics
from tunewatch._config import build_config
from tunewatch._scheduler import LEASE, Scheduler
from tunewatch.store import Store
from tunewatch.store._schema import leases

LEADER = "tunewatch_scheduler_leader"
RENEWED = "tunewatch_scheduler_lease_renewed_timestamp_seconds"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Running:
    store: Store
    scheduler: Scheduler
    metrics: ServingMetrics
    clock: FakeClock

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """A started scheduler on a 600 s lease (renewed every 200 s: the test renews it
    itself), its lease timed by a clock the test moves."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 600}}, env={})
    store = Store.open(config.store_url)
    metrics = ServingMetrics(registry=CollectorRegistry())
    clock = FakeClock()
    scheduler = Scheduler(
        store=store, config=config, jobs=[], metrics=metrics, holder="this", clock=clock
    )
    scheduler.start()
    try:
        yield Running(store, scheduler, metrics, clock)
    finally:
        scheduler.shutdown()
        store.close()


def _taken_by(store: Store, holder: str) -> None:
    """Another process takes the lease, as when this one's lapsed."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(leases)
            .where(leases.c.name == LEASE)
            .values(holder=holder, expires_at=datetime.now(UTC) + timedelta(hours=1))
        )


def test_a_process_that_takes_the_lease_exports_leader_1_and_0_once_another_holds_it(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    assert running.scheduler.leader
    assert running.sample(LEADER) == 1.0
    renewed = running.sample(RENEWED)
    assert renewed is not None and abs(renewed - time.time()) < 600
    _taken_by(running.store, "other")
    caplog.set_level(logging.INFO, logger="tunewatch._scheduler")
    running.scheduler._lead()
    running.scheduler._lead()  # a later tick: nothing new to say
    assert not running.scheduler.leader
    assert running.sample(LEADER) == 0.0
    assert running.sample(RENEWED) == renewed  # when this process last renewed it
    following = [r for r in caplog.records if "following" in r.getMessage()]
    assert [(r.levelno, r.getMessage().endswith("following other")) for r in following] == [
        (logging.INFO, True)
    ]


def test_a_follower_logs_each_new_holder_once(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tunewatch._scheduler")
    for holder in ("b", "b", "c", "c"):
        _taken_by(running.store, holder)
        running.scheduler._lead()
    following = [r.getMessage() for r in caplog.records if "following" in r.getMessage()]
    assert [m.rsplit(" ", 1)[-1] for m in following] == ["b", "c"]


def test_a_leader_whose_lease_ran_out_by_its_own_clock_exports_no_leader_s_figures(
    running: Running,
) -> None:
    """Its renewals stalled (no renewal since): by its flag it still leads, but another
    process may have taken the lease and export its own figures."""
    running.metrics.alarm.labels("credit", "drift_detected").set(1)
    alarm = {"model": "credit", "event": "drift_detected"}
    assert running.sample("tunewatch_alarm", **alarm) == 1.0
    running.clock.now += 600.0  # the lease's life, with no renewal
    assert running.sample("tunewatch_alarm", **alarm) is None
    assert not running.metrics.exports_evaluation
    assert running.sample(LEADER) == 0.0
    running.scheduler._lead()  # renewed: its again (the store still says so)
    assert running.sample(LEADER) == 1.0 and running.metrics.exports_evaluation


def test_a_process_running_no_scheduler_exports_no_leader_series() -> None:
    """A scoring replica (`scheduler.enabled: false`) says nothing of a lease it never
    seeks: its 0 would hold the rules' no-leader sum at 0 wherever it is grouped apart."""
    metrics = ServingMetrics(registry=CollectorRegistry())
    assert metrics.registry.get_sample_value(LEADER) is None
    assert metrics.registry.get_sample_value(RENEWED) is None
