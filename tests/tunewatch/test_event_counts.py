"""``tunewatch_events_total`` and ``tunewatch_notifications_total`` are counted from the
store by the scheduler's leader (:mod:`tunewatch._event_counts`), whichever process
decided the event.

A ``do: notify`` decided by ``tunewatch compare`` or ``tunewatch evaluate`` was counted in
the command's own registry, which nobody scrapes: the event and its ``action_taken`` were
stored, the daemon's ``/metrics`` stayed at 0, and the shipped ``TunewatchNotification``
rule never fired for a test already decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._actions import Dispatcher
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._event_counts import EventCounts
from tunewatch._example import ExampleModel
from tunewatch._scheduler import Scheduler
from tunewatch.store import Store
from tunewatch.store._schema import events

NOTICES = "tunewatch_notifications_total"
EVENTS = "tunewatch_events_total"


def _notices(metrics: ServingMetrics, model: str, event: str) -> float | None:
    return metrics.registry.get_sample_value(NOTICES, {"model": model, "event": event})


def _events(metrics: ServingMetrics, model: str, type: str) -> float | None:
    return metrics.registry.get_sample_value(EVENTS, {"model": model, "type": type})


@contextmanager
def _leading(trained: list[ExampleModel], tmp_path: Path, url: str) -> Iterator[tuple[Daemon, str]]:
    """A daemon serving (its scheduler started: it leads) and its URL."""
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        store_url=url,
        extra={
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"interval_s": 3600}}],
            "tuning": {"workers": 0},
        },
    )
    try:
        with BackgroundServer(daemon.app) as server:
            assert daemon.scheduler.leader
            yield daemon, server.url
    finally:
        daemon.close()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The daemon's ``/metrics``: each sample's value by its name and sorted labels."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _counts(daemon: Daemon) -> EventCounts:
    counts = daemon.scheduler.event_counts
    assert counts is not None
    return counts


def test_a_notice_a_command_decides_is_counted_by_the_leader_daemon(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """As ``tunewatch compare`` does: its own store, registry and dispatcher, and a
    ``challenger_worse`` (``do: notify`` by default) decided on the model's history."""
    with _leading(trained, tmp_path, store_url) as (daemon, url):
        _counts(daemon).poll()
        assert _notices(daemon.metrics, MODEL, "challenger_worse") == 0
        command_store = Store.open(store_url)
        command_metrics = ServingMetrics()
        try:
            dispatcher = Dispatcher(command_store, daemon.config, metrics=command_metrics)
            outcome = dispatcher.handle_after(MODEL, "challenger_worse", {"p": 1e-6}, last=None)
        finally:
            command_store.close()
        assert outcome is not None
        assert (outcome.action, outcome.status) == ("notify", "taken")
        # the command's registry, which nobody scrapes, counts nothing
        assert _notices(command_metrics, MODEL, "challenger_worse") == 0
        assert _counts(daemon).poll() == 2  # the event and its action_taken
        scraped = _scrape(url)
    assert scraped[NOTICES, (("event", "challenger_worse"), ("model", MODEL))] == 1
    assert scraped[EVENTS, (("model", MODEL), ("type", "challenger_worse"))] == 1


def test_the_events_a_leader_raises_itself_are_counted_once(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    with _leading(trained, tmp_path, f"sqlite:///{tmp_path}/tunewatch.db") as (daemon, _):
        counts = _counts(daemon)
        counts.poll()
        daemon.dispatcher.handle(MODEL, "srm_detected", {"p": 1e-9})  # do: notify
        daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})  # do: retune
        assert _events(daemon.metrics, MODEL, "srm_detected") == 0  # not where decided
        for _ in range(3):
            counts.poll()
            assert _events(daemon.metrics, MODEL, "srm_detected") == 1
            assert _notices(daemon.metrics, MODEL, "srm_detected") == 1
            assert _events(daemon.metrics, MODEL, "manual") == 1
            assert _notices(daemon.metrics, MODEL, "manual") == 0  # a retune, no notice


def _age_events(store: Store, by: timedelta, *, after_id: int) -> None:
    """Move the events of an id above ``after_id`` ``by`` into the past."""
    with store.engine.begin() as conn:
        for event_id, created_at in conn.execute(
            sa.select(events.c.id, events.c.created_at).where(events.c.id > after_id)
        ):
            conn.execute(
                sa.update(events).where(events.c.id == event_id).values(created_at=created_at - by)
            )


def test_a_new_leader_counts_a_notice_stored_in_the_rule_s_window_before_it_took_over(
    tmp_path: Path, store_url: str
) -> None:
    """A notice decided 5 minutes before a failover (the old leader gone before it
    counted it) alerts: the new leader starts at the last 15 minutes' events. One decided
    20 minutes before is out of ``TunewatchNotification``'s window and not counted."""
    store = Store.open(store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    dispatcher = Dispatcher(store, config)
    dispatcher.handle("a", "label_delay_high", {})  # do: notify
    _age_events(store, timedelta(minutes=20), after_id=0)
    stale = store.list_events(model="a", limit=1)[0].id
    dispatcher.handle("a", "challenger_worse", {})
    _age_events(store, timedelta(minutes=5), after_id=stale)
    metrics = ServingMetrics()
    leader = Scheduler(store=store, config=config, jobs=[], metrics=metrics)
    try:
        leader.start()
        assert leader.leader and leader.event_counts is not None
        assert leader.event_counts.poll() == 2
        assert _notices(metrics, "a", "challenger_worse") == 1
        assert _events(metrics, "a", "challenger_worse") == 1
        assert _notices(metrics, "a", "label_delay_high") == 0
        assert _events(metrics, "a", "label_delay_high") == 0
    finally:
        leader.shutdown()
        store.close()


@pytest.mark.postgres
def test_an_event_committed_after_a_newer_one_is_counted_too(pg_url: str) -> None:
    """Ids are handed out at the insert: read past while its append was still committing,
    an event is looked for again and counted once it has committed."""
    store = Store.open(pg_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        metrics = ServingMetrics()
        counts = EventCounts(store, metrics)
        counts.poll()
        with store.engine.connect() as slow:
            slow.execute(
                events.insert().values(
                    model="a", type="srm_detected", payload={}, created_at=sa.func.now()
                )
            )  # its id taken, not yet committed
            store.add_event(model="a", type="drift_detected", payload={})
            assert counts.poll() == 1
            assert _events(metrics, "a", "drift_detected") == 1
            assert _events(metrics, "a", "srm_detected") is None
            slow.commit()
        assert counts.poll() == 1
        assert _events(metrics, "a", "srm_detected") == 1
        assert counts.poll() == 0
        assert _events(metrics, "a", "drift_detected") == 1
    finally:
        store.close()


def test_the_store_reads_events_forward_from_an_id_and_finds_the_window_s_start(
    tmp_path: Path, store_url: str
) -> None:
    store = Store.open(store_url)
    try:
        ids = [store.add_event(model="a", type="manual", payload={"i": i}).id for i in range(5)]
        assert [e.id for e in store.events_after(ids[1], limit=10)] == ids[2:]
        assert [e.id for e in store.events_after(ids[1], limit=2)] == ids[2:4]
        # ids read past before (gaps) come first, with the newer ones
        assert [e.id for e in store.events_after(ids[3], also=[ids[0], ids[2]], limit=10)] == [
            ids[0],
            ids[2],
            ids[4],
        ]
        assert store.events_after(ids[4], limit=10) == []
        _age_events(store, timedelta(minutes=20), after_id=0)
        _age_events(store, timedelta(minutes=-10), after_id=ids[2])  # stamped 10 min ago
        since = store.list_events(limit=1)[0].created_at - timedelta(minutes=5)
        assert store.last_event_id_before(since) == ids[2]
        assert store.last_event_id_before(since - timedelta(hours=1)) == 0
    finally:
        store.close()


def test_the_rollback_watch_s_events_are_counted(sqlite_url: str) -> None:
    """A rollback the watch carried out, and one refused (``rollback_failed``: the worse
    champion goes on serving), were stored and counted nowhere; the shipped
    ``TunewatchRollbackFailed`` rule reads the count."""
    store = Store.open(sqlite_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        metrics = ServingMetrics()
        counts = EventCounts(store, metrics)
        counts.poll()
        for type in ("rollback_failed", "rollback_triggered", "stage_changed"):
            store.add_event(model="a", type=type, payload={})
        assert counts.poll() == 3
        assert _events(metrics, "a", "rollback_failed") == 1
        assert _events(metrics, "a", "rollback_triggered") == 1
        assert _events(metrics, "a", "stage_changed") is None  # not an event the rules read
    finally:
        store.close()
