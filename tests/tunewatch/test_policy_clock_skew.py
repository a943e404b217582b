"""A policy's event rests on windows newer than the ones that raised its last event,
whatever the hosts' clocks say: requests are stamped by the scoring host's clock, events
by the evaluating host's."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._policies import EventPolicy, decide
from tunewatch.store import EvaluationRow
from tunewatch.store import _evaluations as evaluation_rows
from tunewatch.store import _events as event_rows

WINDOW = 300  # rows per window, fed at 1 request/s: a 5-minute window


def _daemon(trained: list[ExampleModel], tmp_path: Path) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "drift": {"consecutive": 2, "cooldown_minutes": 60},
                    },
                    "triggers": [{"on": "drift_detected", "do": "notify"}],
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    return d


@pytest.mark.parametrize(
    "scoring_ahead",
    [timedelta(0), timedelta(minutes=10)],
    ids=["same-clocks", "scoring-host-10-min-ahead"],
)
def test_drift_event_is_not_raised_again_on_the_same_windows_after_the_cooldown(
    trained: list[ExampleModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scoring_ahead: timedelta,
) -> None:
    evaluating = Clock()  # the evaluating host's clock: evaluations and events
    scoring = Clock(evaluating.now + scoring_ahead)  # the scoring host's: received_at
    for module in (event_rows, evaluation_rows):
        monkeypatch.setattr(module, "utcnow", evaluating)
    d = _daemon(trained, tmp_path)
    d.evaluator.clock = evaluating

    def drifted_windows(seed: int) -> None:
        for w in range(2):
            start = scoring.now
            feed(d, scoring, seed * 1000 + w * WINDOW, WINDOW, shift=2.0, seed=seed + w)
            evaluating.now += scoring.now - start  # the same 300 s pass on both hosts
            d.evaluator.evaluate(MODEL)

    def events() -> list[datetime]:
        fired = d.store.list_events(model=MODEL, type="drift_detected", limit=10)
        return [e.created_at for e in fired]

    drifted_windows(seed=100)
    assert len(events()) == 1
    for _ in range(14):  # no traffic: a run every 5 minutes, past the 60-minute cool-down
        evaluating.now += timedelta(minutes=5)
        scoring.now += timedelta(minutes=5)
        d.evaluator.evaluate(MODEL)
    assert len(events()) == 1, "the same two windows raised drift_detected again"

    drifted_windows(seed=200)  # two new drifted windows after the cool-down
    assert len(events()) == 2


def _drift(
    i: int, first: datetime, last: datetime, *, created: datetime | None = None
) -> EvaluationRow:
    return EvaluationRow(
        id=i,
        model=MODEL,
        version=1,
        kind="drift",
        status="ok",
        window_start=first,
        window_end=created or last,
        payload={
            "alarm": True,
            "first_request_at": first.isoformat(),
            "last_request_at": last.isoformat(),
        },
        created_at=created or last,
    )


def test_a_window_is_new_after_the_requests_the_last_event_rested_on_not_after_its_time() -> None:
    policy = EventPolicy(event="drift_detected", kind="drift", cooldown=timedelta(hours=1))
    t = Clock().now
    older = _drift(1, t, t + timedelta(minutes=5))
    newer = _drift(2, t + timedelta(minutes=6), t + timedelta(minutes=10))
    fired = decide(policy, [newer, older], last_event_at=None, now=t)
    assert fired.fire and fired.rested_on is not None
    # recorded as the newer window closed, by a clock more than 10 minutes behind the
    # requests': both windows' requests look received after the event's time
    stamped = newer.window_end - timedelta(minutes=10, seconds=1)
    later = stamped + timedelta(hours=2)
    again = decide(
        policy, [newer, older], last_event_at=stamped, now=later, rested_on=fired.rested_on
    )
    assert not again.fire and "since the last event" in again.reason
    # an event stored before it recorded its requests: windows judged after its time
    assert decide(policy, [newer, older], last_event_at=stamped, now=later).fire
