"""The counters the shipped rules and dashboard read through ``increase()`` are exported at
0 before their first increment: Prometheus cannot count a series' first sample, so a
series born at 1 hid one failure or event.

``TunewatchScheduledJobFailing`` ("three failures of one job within an hour") fired only
at the fourth failure, and the "Events raised" panel missed the first event of each
(model, type) in a process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._config import EventType
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

EVENT_TYPES: tuple[str, ...] = get_args(EventType)


def _scrape(url: str) -> set[str]:
    return set(httpx.get(f"{url}/metrics", timeout=30).text.splitlines())


@contextmanager
def _served(daemon: Daemon) -> Iterator[set[str]]:
    """The daemon started (its scheduler's first tick run) and its ``/metrics`` scraped
    before anything ran or failed."""
    try:
        with BackgroundServer(daemon.app) as server:
            yield _scrape(server.url)
    finally:
        daemon.close()


@pytest.fixture
def leader(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, set[str]]]:
    """A leader whose model ``credit`` is in the store, and configured."""
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"interval_s": 3600}}],
            "tuning": {"workers": 0},
        },
    )
    with _served(daemon) as lines:
        yield daemon, lines


def test_a_leader_exports_each_scheduled_job_s_failures_at_zero_before_any_failure(
    leader: tuple[Daemon, set[str]],
) -> None:
    daemon, lines = leader
    scheduled = daemon.scheduler.scheduled()
    assert "evaluate:credit" in scheduled and "launch_jobs" in scheduled
    for job_id in scheduled:
        if job_id == "leadership":
            continue
        name, _, model = job_id.partition(":")
        sample = (
            f'tunewatch_evaluations_total{{model="{model or "-"}",outcome="{name}_failed"}} 0.0'
        )
        assert sample in lines, job_id
    assert 'tunewatch_evaluations_total{model="credit",outcome="evaluate_failed"} 0.0' in lines


def test_a_daemon_exports_every_event_type_of_a_configured_model_at_zero(
    leader: tuple[Daemon, set[str]],
) -> None:
    _, lines = leader
    for event in EVENT_TYPES:
        assert f'tunewatch_events_total{{model="credit",type="{event}"}} 0.0' in lines, event


@pytest.mark.parametrize("event", ["rollback_triggered", "rollback_failed"])
def test_a_daemon_exports_the_rollback_watch_s_events_at_zero(
    leader: tuple[Daemon, set[str]], event: str
) -> None:
    """The rollback watch's events are counted too: ``rollback_failed`` is stored once
    per test, so a series born at 1 stayed at 1 and ``TunewatchRollbackFailed``
    (``increase(…[1d]) > 0``) never paged for a model's first refused rollback."""
    _, lines = leader
    assert f'tunewatch_events_total{{model="credit",type="{event}"}} 0.0' in lines


def test_a_scoring_replica_exports_a_configured_model_s_events_at_zero(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Events raised through the API (an alert delivered, a manual retune) are counted by
    the scheduler's leader, from the store: a replica that runs no scheduler exports them
    at 0 too, from which it counts if it takes the lease."""
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={"models": [{"name": MODEL, "task": "binary"}], "scheduler": {"enabled": False}},
    )
    with _served(daemon) as lines:
        assert 'tunewatch_events_total{model="credit",type="alert_received"} 0.0' in lines
        assert 'tunewatch_events_total{model="credit",type="manual"} 0.0' in lines
        # no scheduled job runs here: none of their failures is exported
        assert not any(line.startswith("tunewatch_evaluations_total{") for line in lines)


def test_a_scoring_replica_exports_the_events_of_a_model_only_the_store_knows_at_zero(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A model registered without configuration is served by every replica, any of which
    may take the lease and count its events: only the leader made them 0 first."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    with _served(daemon) as lines:
        for event in EVENT_TYPES:
            assert f'tunewatch_events_total{{model="credit",type="{event}"}} 0.0' in lines, event


def test_a_leader_exports_the_events_of_a_model_only_the_store_knows_at_zero(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A model registered without configuration is evaluated with the defaults: the leader
    that schedules its jobs exports its events at 0."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    with _served(daemon) as lines:
        assert 'tunewatch_evaluations_total{model="credit",outcome="evaluate_failed"} 0.0' in lines
        for event in EVENT_TYPES:
            assert f'tunewatch_events_total{{model="credit",type="{event}"}} 0.0' in lines, event


def test_the_first_event_and_failure_count_one_over_their_zero(
    leader: tuple[Daemon, set[str]],
) -> None:
    """The series go on from 0: the first of each reads 1, so ``increase()`` counts it."""
    daemon, _ = leader
    daemon.dispatcher.handle(MODEL, "manual", {"reason": "first"})
    assert daemon.scheduler.event_counts is not None  # the leader counts it, from the store
    daemon.scheduler.event_counts.poll()

    def broken() -> None:
        raise ValueError("the evaluation's store refused its row")

    daemon.scheduler._guarded("evaluate", MODEL, broken)()
    text = daemon.metrics.exposition().decode().splitlines()
    assert 'tunewatch_events_total{model="credit",type="manual"} 1.0' in text
    assert 'tunewatch_evaluations_total{model="credit",outcome="evaluate_failed"} 1.0' in text
