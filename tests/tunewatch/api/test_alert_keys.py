"""What keys an Alertmanager alert's episode and its job: the fingerprint (or, without
one, the labels), and ``startsAt``, which must be an RFC 3339 time, read as its instant
in UTC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alert_keys import starts_at_of
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
#: startsAt as sent, and the episode's key: its instant as Alertmanager writes it in UTC.
RFC3339 = {
    "nanoseconds": ("2026-11-28T10:00:00.123456789Z", "2026-11-28T10:00:00.123456789Z"),
    "an-offset": ("2026-11-28T10:00:00+05:30", "2026-11-28T04:30:00Z"),
    "lower-case": ("2026-11-28t10:00:00.5z", "2026-11-28T10:00:00.5Z"),
    "unknown-offset": ("2026-11-28T10:00:00-00:00", "2026-11-28T10:00:00Z"),
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


def test_rfc3339_starts_are_episodes_keyed_by_their_instant_in_utc(daemon: Daemon) -> None:
    for name, (starts, key) in RFC3339.items():
        [job_id] = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))["jobs"]
        job = daemon.store.get_job(job_id)
        assert job.trigger["startsAt"] == key, name
        assert job.dedupe_key == f"alert:fp-{name}:{key}", name
        again = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))
        assert again["jobs"] == [] and again["ignored"] == [], name
        _finish_jobs(daemon)


#: One instant, as Alertmanager writes it in UTC (Go's time.RFC3339Nano: trailing zeros
#: of the fraction dropped, none when it is whole) and as other writers may.
SAME_INSTANT = [
    "2026-12-06T20:00:00Z",
    "2026-12-07T01:30:00+05:30",
    "2026-12-06T15:00:00-05:00",
    "2026-12-06T20:00:00.000000000Z",
    "2026-12-06T20:00:00.0+00:00",
    "2026-12-06t20:00:00z",
    "2026-12-06T20:00:00-00:00",
]


def test_a_start_is_keyed_by_its_instant_whatever_offset_or_precision_writes_it() -> None:
    """The episode was keyed by the text: the same alert redelivered with its `startsAt`
    in another offset (an HA peer in another time zone) or with the fraction's zeros
    written was a new episode, and queued another retune."""
    assert {starts_at_of(starts) for starts in SAME_INSTANT} == {"2026-12-06T20:00:00Z"}


@pytest.mark.parametrize(
    ("starts", "key"),
    [
        pytest.param(
            "2026-12-06T20:00:00.123456789Z", "2026-12-06T20:00:00.123456789Z", id="nanoseconds"
        ),
        pytest.param(
            "2026-12-07T01:30:00.123456789+05:30",
            "2026-12-06T20:00:00.123456789Z",
            id="nanoseconds-offset",
        ),
        pytest.param("2026-12-06T20:00:00.120Z", "2026-12-06T20:00:00.12Z", id="trailing-zero"),
        pytest.param("2026-12-06T20:00:00.5z", "2026-12-06T20:00:00.5Z", id="lower-case"),
        pytest.param("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z", id="next-year"),
        pytest.param("2028-03-01T01:00:00+05:00", "2028-02-29T20:00:00Z", id="leap-day"),
        pytest.param("0001-01-01T00:00:00+01:00", "0000-12-31T23:00:00Z", id="year-zero"),
        pytest.param("0000-02-29T12:00:00Z", "0000-02-29T12:00:00Z", id="year-zero-leap"),
        pytest.param("9999-12-31T22:00:00-01:59", "9999-12-31T23:59:00Z", id="last-year"),
    ],
)
def test_a_start_is_keyed_as_alertmanager_writes_it_in_utc(starts: str, key: str) -> None:
    """Keys of episodes Alertmanager sent in UTC stay those stored before; no digit of
    the fraction is lost (datetime holds microseconds, Alertmanager sends nanoseconds)."""
    assert starts_at_of(starts) == key


@pytest.mark.parametrize(
    "starts",
    [
        pytest.param("9999-12-31T23:00:00-02:00", id="utc-year-10000"),
        pytest.param("2026-12-06T20:00:00+05:60", id="offset-minute-60"),
        pytest.param("2026-12-06T20:00:00+05:99", id="offset-minute-99"),
        pytest.param("2026-02-29T20:00:00Z", id="no-leap-day"),
    ],
)
def test_a_start_with_no_utc_time_alertmanager_could_write_is_none(starts: str) -> None:
    """Go writes years 0000 to 9999 only."""
    assert starts_at_of(starts) is None


def test_a_start_that_is_no_calendar_time_is_ignored(daemon: Daemon) -> None:
    for name, starts in NO_CALENDAR_TIME.items():
        [reason] = deliver(daemon, alert({}, fingerprint=f"fp-{name}", starts=starts))["ignored"]
        assert "`startsAt` must be an RFC 3339 time" in reason and repr(starts) in reason, name


def test_an_episode_redelivered_with_its_start_in_another_offset_is_the_same_episode(
    daemon: Daemon,
) -> None:
    """Its retune done, the firing alert redelivered with `startsAt` in another offset
    (an HA peer in another time zone) or precision opened a new episode and queued a
    second retune; and the resolve written in one form left the other's episode open."""
    first = deliver(daemon, alert({}, fingerprint="f00dfeed0002", starts=SAME_INSTANT[0]))
    assert first["new_episodes"] == 1 and len(first["jobs"]) == 1
    _finish_jobs(daemon)
    for starts in SAME_INSTANT[1:]:
        again = deliver(daemon, alert({}, fingerprint="f00dfeed0002", starts=starts))
        assert (again["new_episodes"], again["jobs"], again["ignored"]) == (0, [], []), starts
    resolved = deliver(
        daemon,
        alert({}, fingerprint="f00dfeed0002", starts=SAME_INSTANT[1], status="resolved"),
    )
    assert resolved["ignored"] == []  # resolved the episode: not one never seen firing
    assert _episodes(daemon) == 1
    [job] = daemon.store.list_jobs(model=MODEL)
    assert job.dedupe_key == "alert:f00dfeed0002:2026-12-06T20:00:00Z"
    assert len(daemon.store.list_events(model=MODEL, type="alert_received")) == 1
