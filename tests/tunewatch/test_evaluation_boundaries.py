"""Boundaries of the evaluation policies that the other tests left free to move: the
edge of a cool-down, of two windows sharing one request, of a window received at the
last event's instant, each kind's own settings, and the label-delay alarm's half share
and the smallest window an evaluation measures, and the evidence a decay verdict
counts as its own (its newest matured window)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.conftest import Clock, feed
from tests.tunewatch.test_evaluation import _champion_daemon, _write_hour
from tunewatch._config import EvaluationConfig
from tunewatch._daemon import Daemon
from tunewatch._drift_report import LABEL
from tunewatch._example import ExampleModel
from tunewatch._policies import Decision, EventPolicy, decide, evaluation_policies
from tunewatch.store import EvaluationRow

MODEL = "credit"
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
DRIFT_TWICE = EventPolicy(
    event="drift_detected", kind="drift", consecutive=2, cooldown=timedelta(hours=1)
)


def _window(
    i: int,
    first: int,
    last: int,
    *,
    kind: str = "drift",
    labels: tuple[int, int] | None = None,
) -> EvaluationRow:
    """A measured, alarming verdict run at minute ``i`` whose window held the requests
    received from minute ``first`` to minute ``last`` (inclusive), and whose drifted
    labels, when given, those of minutes ``labels``."""
    payload: dict[str, object] = {
        "alarm": True,
        "first_request_at": (T0 + timedelta(minutes=first)).isoformat(),
        "last_request_at": (T0 + timedelta(minutes=last)).isoformat(),
    }
    if labels is not None:
        payload["label_first_request_at"] = (T0 + timedelta(minutes=labels[0])).isoformat()
        payload["label_last_request_at"] = (T0 + timedelta(minutes=labels[1])).isoformat()
    return EvaluationRow(i, "a", 1, kind, "ok", None, T0 + timedelta(minutes=i), payload, T0)


# -- policies ----------------------------------------------------------------------------
def test_an_event_fires_again_once_its_cool_down_has_exactly_run_out() -> None:
    fired = T0 + timedelta(minutes=10)
    streak = [_window(60, 40, 49), _window(50, 30, 39)]
    at_the_end = decide(DRIFT_TWICE, streak, last_event_at=fired, now=fired + timedelta(hours=1))
    assert at_the_end.fire
    just_before = fired + timedelta(hours=1) - timedelta(microseconds=1)
    cooling = decide(DRIFT_TWICE, streak, last_event_at=fired, now=just_before)
    assert not cooling.fire and "cooling down" in cooling.reason


def test_windows_sharing_only_their_boundary_request_are_one_window() -> None:
    """The older window's newest request is the newer one's oldest: they share it."""
    touching = [_window(2, 10, 19), _window(1, 0, 10)]
    decision = decide(DRIFT_TWICE, touching, last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1
    apart = [_window(2, 10, 19), _window(1, 0, 9)]
    assert decide(DRIFT_TWICE, apart, last_event_at=None, now=T0).fire


def test_label_windows_sharing_only_their_boundary_request_are_one_window() -> None:
    touching = [_window(2, 20, 29, labels=(5, 9)), _window(1, 10, 19, labels=(0, 5))]
    decision = decide(DRIFT_TWICE, touching, last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1
    apart = [_window(2, 20, 29, labels=(5, 9)), _window(1, 10, 19, labels=(0, 4))]
    assert decide(DRIFT_TWICE, apart, last_event_at=None, now=T0).fire


def test_a_window_starting_at_the_last_event_s_instant_is_not_new_evidence() -> None:
    """The verdict that raised the event judged requests up to its instant: a window whose
    oldest request came then is not wholly after it."""
    fired = T0 + timedelta(minutes=10)
    later = T0 + timedelta(hours=7)
    from_the_event = [_window(40, 20, 29), _window(30, 10, 19)]
    decision = decide(DRIFT_TWICE, from_the_event, last_event_at=fired, now=later)
    assert not decision.fire and "since the last event" in decision.reason
    after_it = [_window(40, 21, 29), _window(30, 11, 20)]
    assert decide(DRIFT_TWICE, after_it, last_event_at=fired, now=later).fire


def test_label_delay_high_stays_quiet_for_a_day_after_it_fired() -> None:
    labels = next(p for p in evaluation_policies(EvaluationConfig()) if p.kind == "labels")
    fired = T0 + timedelta(minutes=10)
    late = [_window(2000, 100, 199, kind="labels")]
    after_a_night = fired + timedelta(hours=23)
    quiet = decide(labels, late, last_event_at=fired, now=after_a_night)
    assert not quiet.fire and "cooling down" in quiet.reason
    assert decide(labels, late, last_event_at=fired, now=fired + timedelta(days=1)).fire


def test_each_kind_s_event_follows_its_own_consecutive_and_cool_down() -> None:
    """drift, decay and estimate each have their own settings: one kind's must not be
    read for another's. Each kind's settings differ from the others', so a policy that
    took another kind's consecutive or cool-down decides differently."""
    ev = EvaluationConfig.model_validate(
        {
            "drift": {"consecutive": 3, "cooldown_minutes": 600},
            "decay": {"consecutive": 1, "cooldown_minutes": 30},
            "estimate": {"consecutive": 2, "cooldown_minutes": 90},
        }
    )
    policies = {p.kind: p for p in evaluation_policies(ev)}
    fired = T0 + timedelta(minutes=10)
    an_hour_later = fired + timedelta(hours=1)

    def decision(kind: str, windows: int, now: datetime) -> Decision:
        streak = [_window(50 - 10 * i, 30 - 10 * i, 39 - 10 * i, kind=kind) for i in range(windows)]
        return decide(policies[kind], streak, last_event_at=fired, now=now)

    # decay: one window, 30 minutes' cool-down
    assert decision("decay", 1, an_hour_later).fire
    # estimate: one window is not a streak of two; two are, within 90 minutes' cool-down
    one = decision("estimate", 1, an_hour_later)
    assert not one.fire and "1/2 consecutive" in one.reason, one.reason
    cooling = decision("estimate", 2, an_hour_later)
    assert not cooling.fire and "cooling down" in cooling.reason, cooling.reason
    assert decision("estimate", 2, fired + timedelta(minutes=90)).fire
    # drift: two windows are not a streak of three
    two = [_window(50, 30, 39), _window(40, 20, 29)]
    drift = decide(policies["drift"], two, last_event_at=None, now=an_hour_later)
    assert not drift.fire and drift.streak == 2


# -- evaluation ---------------------------------------------------------------------------
@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": 600,
            "drift": {"consecutive": 2, "cooldown_minutes": 600},
            "decay": {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24},
        },
    )
    yield d
    d.close()


def test_exactly_half_of_the_aged_requests_late_raises_no_label_delay_alarm(
    daemon: Daemon,
) -> None:
    """The alarm says the median delay is past the limit: with half the requests old
    enough labelled in time and half never labelled, it is not (more than half late is)."""
    clock = Clock()  # six hours ago
    feed(daemon, clock, 0, 300, shift=0.0, seed=1)  # labelled now: six hours late
    feed(daemon, clock, 300, 300, shift=0.0, seed=2, labels=False)
    daemon.evaluator.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert labels["n_aged"] == 600 and labels["late_share"] == 0.5
    assert labels["median_delay_s"] < 7 * 86_400
    assert not labels["alarm"]
    assert daemon.store.list_events(model=MODEL, type="label_delay_high") == []


def test_a_window_of_exactly_min_rows_is_estimated_and_tested_on_its_labels(
    daemon: Daemon,
) -> None:
    """``drift.min_rows`` (100) is the smallest window measured, not the largest refused."""
    daemon.evaluator.clock = clock = Clock()
    feed(daemon, clock, 0, 100, shift=0.0, seed=3)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["estimate"].status == "ok" and rows["estimate"].payload["n"] == 100
    [label] = [c for c in rows["drift"].payload["columns"] if c["column"] == LABEL]
    assert label["status"] != "insufficient_data" and label["n_cur"] == 100


def test_a_decay_check_without_enough_matured_windows_is_insufficient_data(
    daemon: Daemon,
) -> None:
    """One hour of traffic is one window, fewer than ``decay.min_windows``: the verdict
    could not measure a trend, and must not break a decay streak as a measured one does."""
    daemon.evaluator.clock = clock = Clock()
    feed(daemon, clock, 0, 600, shift=0.0, seed=4)
    decay = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["decay"]
    assert decay.payload["status"] == "insufficient_data"
    assert decay.status == "insufficient_data" and not decay.payload["alarm"]


def test_a_decay_crossing_its_threshold_after_the_horizon_raises_no_alarm(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Accuracy falls from 0.90 to 0.80 over 23 hourly windows: a real decay, but at that
    pace it reaches a threshold of 0.0 in about a week, beyond ``horizon_days: 1``."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": 600,
            "decay": {
                "window_s": 3600,
                "maturity_s": 0,
                "horizon_windows": 24,
                "horizon_days": 1,
                "threshold": 0.0,
            },
        },
        model={"objective": {"name": "accuracy"}},
    )
    try:
        t0 = datetime.now(UTC) + timedelta(hours=1)  # every label matured (maturity_s 0)
        d.evaluator.clock = lambda: t0 + timedelta(hours=24)
        for hour in range(1, 24):
            _write_hour(d, t0, hour, 300, 0.90 - 0.10 * (hour - 1) / 22, seed=100 + hour)
        decay = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"].payload
        assert decay["status"] == "decaying" and decay["projected_crossing"] is not None
        crossing = datetime.fromisoformat(decay["projected_crossing"])
        assert crossing - (t0 + timedelta(hours=24)) > timedelta(days=1)
        assert not decay["alarm"]
        assert d.store.list_events(model=MODEL, type="decay_detected") == []
    finally:
        d.close()


def test_two_decay_alarms_an_hour_apart_are_two_windows_of_evidence(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A decay verdict's evidence is its newest matured window, not the whole horizon:
    hourly checks of a steady decay share 23 hours of requests, and read as one window
    they would never make ``decay.consecutive: 2`` and raise ``decay_detected``."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": 600,
            "decay": {
                "window_s": 3600,
                "maturity_s": 0,
                "horizon_windows": 24,
                "horizon_days": 1,
                "consecutive": 2,
            },
        },
        model={"objective": {"name": "accuracy"}},
    )
    try:
        t0 = datetime.now(UTC) + timedelta(hours=1)  # every label matured (maturity_s 0)
        for hour in range(1, 25):
            _write_hour(d, t0, hour, 300, 0.90 - 0.10 * (hour - 1) / 22, seed=100 + hour)
        alarms = []
        for at in (24, 25):  # the second check's newest window is hour 24
            d.evaluator.clock = lambda at=at: t0 + timedelta(hours=at)
            alarms.append({r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"].payload)
        assert [a["alarm"] for a in alarms] == [True, True]
        assert alarms[0]["last_request_at"] < alarms[1]["first_request_at"]
        assert len(d.store.list_events(model=MODEL, type="decay_detected")) == 1
    finally:
        d.close()
