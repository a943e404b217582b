"""A drift episode whose retune the quota holds records its event and the suppression
once; its later alarming runs try the retune again silently, and the event stays the
policy's hysteresis and cool-down anchor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import JobRow

WINDOW = 600  # rows per evaluated window


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """The default drift trigger (a retune, 6 h cool-down), a quota of one job."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "tuning": {"max_concurrent_jobs": 1},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "drift": {"consecutive": 2, "cooldown_minutes": 360},
                        "decay": {"enabled": False},
                        "estimate": {"enabled": False},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    champion = trained[0]
    d.registry.register(
        MODEL,
        champion.onnx,
        champion.metadata,
        actor="test",
        stage="champion",
        reference=champion.reference,
    )
    d.store.ensure_model(name="other", task="binary", feature_names=["x"])
    try:
        yield d
    finally:
        d.close()


def _fill_the_quota(d: Daemon) -> JobRow:
    """Another model's job takes the only slot."""
    blocker, _ = d.store.create_job(
        model="other", kind="retune", trigger={"event": "manual"}, spec={}
    )
    return blocker


def _drift_events(d: Daemon) -> list[str]:
    return [
        e.type
        for e in reversed(d.store.list_events(model=MODEL, limit=200))
        if e.type == "drift_detected" or e.type.startswith("action_")
    ]


def test_a_drift_episode_held_by_the_quota_records_its_event_once(daemon: Daemon) -> None:
    """While the quota was full, the owed event did not count as the policy's last: every
    alarming run raised `drift_detected` and `action_suppressed` again (9 of each over 9
    windows). Request times close to real time: 6 h in the past, no window of them came
    after the event, which hid it."""
    blocker = _fill_the_quota(daemon)
    clock = Clock(datetime.now(UTC) - timedelta(seconds=12 * WINDOW))
    daemon.evaluator.clock = clock
    alarms = []
    for w in range(12):
        if w == 10:  # the quota frees
            daemon.store.finish_job(blocker.id, status="succeeded", result={})
        feed(daemon, clock, w * WINDOW, WINDOW, shift=1.0 if w >= 2 else 0.0, seed=100 + w)
        rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
        alarms.append(bool(rows["drift"].payload["alarm"]))
        if w == 9:  # windows 3 to 9 alarmed with the quota full
            assert _drift_events(daemon) == ["drift_detected", "action_suppressed"]
            assert daemon.store.list_jobs(model=MODEL) == []
    assert alarms == [False, False] + [True] * 10
    assert _drift_events(daemon) == ["drift_detected", "action_suppressed", "action_taken"]
    [fired] = daemon.store.list_events(model=MODEL, type="drift_detected")
    [suppressed] = daemon.store.list_events(model=MODEL, type="action_suppressed")
    [taken] = daemon.store.list_events(model=MODEL, type="action_taken")
    assert suppressed.payload["cause"] == "quota"
    [job] = daemon.store.list_jobs(model=MODEL)
    assert (job.trigger["event"], job.trigger["evaluation"]) == (
        "drift_detected",
        fired.payload["evaluation"],
    )
    assert (taken.payload["trigger"], taken.payload["job"]) == ("drift_detected", job.id)


def test_an_owed_drift_retune_waits_for_the_alarm_to_hold(daemon: Daemon) -> None:
    """The retry is the episode's: a run whose drift alarm no longer holds queues
    nothing, even with the quota free; the next alarming streak retunes on the owed
    event, recording no new one inside its cool-down."""
    blocker = _fill_the_quota(daemon)
    clock = Clock(datetime.now(UTC) - timedelta(seconds=10 * WINDOW))
    daemon.evaluator.clock = clock
    drifted = [False, True, True, True, False, False, True, True, True]
    for w, shift in enumerate(drifted):
        if w == 5:  # the quota frees after the drift stopped
            daemon.store.finish_job(blocker.id, status="succeeded", result={})
        feed(daemon, clock, w * WINDOW, WINDOW, shift=1.0 if shift else 0.0, seed=200 + w)
        daemon.evaluator.evaluate(MODEL)
        if w == 5:
            assert daemon.store.list_jobs(model=MODEL) == []
    assert _drift_events(daemon) == ["drift_detected", "action_suppressed", "action_taken"]
    assert len(daemon.store.list_jobs(model=MODEL)) == 1
