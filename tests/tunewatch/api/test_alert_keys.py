"""What keys an Alertmanager alert's episode and its job: the fingerprint (or, without
one, the labels), and ``startsAt``, which must be an RFC 3339 time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts
from tunewatch.store._schema import alert_episodes

FIRING_AT = "2026-11-28T10:00:00Z"
MISSING = object()


def alert(
    labels: dict[str, str],
    *,
    fingerprint: str | None = None,
    starts: object = FIRING_AT,
    status: str = "firing",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "TunewatchDriftHigh", "model": MODEL, **labels},
    }
    if starts is not MISSING:
        out["startsAt"] = starts
    if fingerprint is not None:
        out["fingerprint"] = fingerprint
    return out


def deliver(daemon: Daemon, *alerts: dict[str, Any]) -> dict[str, Any]:
    body = {"version": "4", "status": "firing", "alerts": list(alerts)}
    return handle_alerts(daemon.app.ctx, body)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Daemon]:
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    d, _ = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={
            "tuning": {"max_concurrent_jobs": 100},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )
    yield d
    d.close()


def _episodes(daemon: Daemon) -> int:
    with daemon.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(alert_episodes)).scalar_one())


def _finish_jobs(daemon: Daemon) -> None:
    """End the model's queued jobs: while one is, another episode's retune is its
    duplicate and queues no job of its own."""
    for job in daemon.store.list_jobs(model=MODEL, status="queued"):
        daemon.store.finish_job(job.id, status="succeeded", result={})


def test_alerts_without_a_fingerprint_whose_labels_differ_are_two_episodes(
    daemon: Daemon,
) -> None:
    """The labels were joined as `k=v` lines: a value holding a newline and `z=2` read
    as a label z=2, and the second alert was taken for the first's episode (no job)."""
    first = deliver(daemon, alert({"x": "1\nz=2"}))
    _finish_jobs(daemon)
    second = deliver(daemon, alert({"x": "1", "z": "2"}))
    assert (first["new_episodes"], second["new_episodes"]) == (1, 1)
    assert len(first["jobs"]) == len(second["jobs"]) == 1
    keys = {j.dedupe_key for j in daemon.store.list_jobs(model=MODEL)}
    assert len(keys) == 2


def test_an_alertmanager_fingerprint_keeps_its_job_key(daemon: Daemon) -> None:
    """Jobs of episodes stored before keep deduplicating their redeliveries."""
    [job_id] = deliver(daemon, alert({}, fingerprint="3fa5c2b1d4e6f708"))["jobs"]
    job = daemon.store.get_job(job_id)
    assert job.dedupe_key == f"alert:3fa5c2b1d4e6f708:{FIRING_AT}"


def test_a_fingerprint_holding_a_colon_has_a_key_of_its_own() -> None:
    """`alert:{fingerprint}:{startsAt}` gave ("f:2026", "01") and ("f", "2026:01") one
    key: the second episode's job was taken for the first's."""
    from tunewatch.api._alerts import dedupe_key

    pairs = [
        ("f:2026", "01"),
        ("f", "2026:01"),
        ("f:2026-11-28T10", "00:00Z"),
        ("f", "2026-11-28T10:00:00Z"),
        ("3fa5c2b1d4e6f708", FIRING_AT),
        ("3fa5c2b1d4e6f708:", FIRING_AT),
        ("#1:a", "b"),
    ]
    keys = [dedupe_key(fingerprint, starts) for fingerprint, starts in pairs]
    assert len(set(keys)) == len(pairs), keys
    assert len(dedupe_key(":" * 64, "x" * 64)) <= 300  # the column holds it


NOT_RFC3339 = {
    "missing": MISSING,
    "null": None,
    "a-number": 1764324000,
    "empty": "",
    "garbage": "garbage",
    "a-date": "2026-11-28",
    "no-offset": "2026-11-28T10:00:00",
}
RFC3339 = {
    "nanoseconds": "2026-11-28T10:00:00.123456789Z",
    "an-offset": "2026-11-28T10:00:00+05:30",
    "lower-case": "2026-11-28t10:00:00.5z",
    "unknown-offset": "2026-11-28T10:00:00-00:00",
}
NO_CALENDAR_TIME = {
    "february-30": "2026-02-30T10:00:00Z",
    "hour-24": "2026-11-28T24:00:00Z",
    "offset-24h": "2026-11-28T10:00:00+24:00",
}


def test_an_alert_without_an_rfc3339_start_is_listed_as_ignored_and_not_stored(
    daemon: Daemon,
) -> None:
    """Alertmanager always sends `startsAt`. Without one (or with one that is no time)
    every episode of the alert shared one key: once it resolved, each later firing was
    taken for a stale delivery of it and dropped, with no job and nothing under
    `ignored`. (One daemon for every form: a daemon a form cost ~1.5 s of CI each.)"""
    for name, starts in NOT_RFC3339.items():
        for status in ("firing", "resolved", "firing"):
            summary = deliver(
                daemon, alert({"k": "c"}, fingerprint=f"cc-{name}", starts=starts, status=status)
            )
            assert summary["new_episodes"] == 0 and summary["jobs"] == [], name
            [reason] = summary["ignored"]
            assert "`startsAt` must be an RFC 3339 time" in reason, (name, reason)
    assert daemon.store.list_jobs(model=MODEL) == []
    assert daemon.store.list_events(model=MODEL, type="alert_received") == []
    assert _episodes(daemon) == 0


def test_rfc3339_starts_are_episodes_keyed_as_sent(daemon: Daemon) -> None:
    for name, starts in RFC3339.items():
        [job_id] = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))["jobs"]
        assert daemon.store.get_job(job_id).trigger["startsAt"] == starts, name
        again = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))
        assert again["jobs"] == [] and again["ignored"] == [], name
        _finish_jobs(daemon)


def test_a_start_that_is_no_calendar_time_is_ignored(daemon: Daemon) -> None:
    for name, starts in NO_CALENDAR_TIME.items():
        [reason] = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))["ignored"]
        assert "`startsAt` must be an RFC 3339 time" in reason and repr(starts) in reason, name
