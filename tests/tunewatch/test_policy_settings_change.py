"""A policy's streak counts only verdicts judged under the settings in force.

An operator who changes what a kind alarms on (drift's share threshold, decay's
objective) and restarts the daemon on the same data directory must not see an event
raised on windows that alarmed only under the old settings: an earlier verdict judged
under other settings ends the streak, as a measured window that did not alarm does. A
verdict stored before verdicts recorded their settings counts as it did.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed, next_midnight
from tests.tunewatch.test_evaluation_decay import CHANGE_DAY, DAY, FIRST_RUN_DAY, _write_days
from tunewatch._config import build_config
from tunewatch._config_evaluation import EvaluationConfig
from tunewatch._config_model import ObjectiveConfig
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._policies import (
    AlarmSettings,
    EventPolicy,
    decay_settings,
    decide,
    drift_settings,
    estimate_settings,
)
from tunewatch.store import EvaluationRow

WINDOW = 600
T0 = datetime(2024, 1, 1)


def _daemon(
    tmp_path: Path,
    evaluation: dict[str, Any],
    *,
    model: dict[str, Any] | None = None,
    trained: list[ExampleModel] | None = None,
) -> Daemon:
    """A daemon on ``tmp_path`` with this model config; with ``trained``, the example
    champion registered first (a restart passes none: the store has it)."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {"name": MODEL, "task": "binary", "evaluation": evaluation, **(model or {})}
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    if trained is not None:
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=trained[0].reference,
        )
    return d


def _drift(share_threshold: float) -> dict[str, Any]:
    return {
        "window_rows": WINDOW,
        "decay": {"enabled": False},
        "estimate": {"enabled": False},
        "drift": {"consecutive": 2, "cooldown_minutes": 600, "share_threshold": share_threshold},
    }


def _shift_first_column(x: np.ndarray) -> None:
    x[:, 0] += 2.0


def test_a_drift_window_that_alarmed_only_under_the_old_share_threshold_starts_no_streak(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = _daemon(tmp_path, _drift(0.2), trained=trained)
    clock = Clock()
    d.evaluator.clock = clock
    feed(d, clock, 0, WINDOW, shift=0.0, seed=101, edit=_shift_first_column)  # a few columns
    first = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    assert first.payload["alarm"] and first.payload["drifted_share"] < 0.5
    d.close()

    d = _daemon(tmp_path, _drift(0.5))  # sensitivity relaxed, the daemon restarted
    d.evaluator.clock = clock
    try:
        feed(d, clock, WINDOW, WINDOW, shift=1.5, seed=102)  # every column drifts
        with caplog.at_level(logging.INFO, logger="tunewatch._evaluation_events"):
            second = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert second.payload["alarm"]
        policy = second.payload["policy"]
        assert (policy["fired"], policy["streak"]) == (False, 1)
        assert "settings changed" in policy["reason"]
        assert not d.store.list_events(model=MODEL, type="drift_detected", limit=5)
        said = [
            r.getMessage() for r in caplog.records if "settings changed since" in r.getMessage()
        ]
        assert len(said) == 1 and "share_threshold: 0.2 -> 0.5" in said[0]

        # a second window under the new settings completes the streak
        feed(d, clock, 2 * WINDOW, WINDOW, shift=1.5, seed=103)
        with caplog.at_level(logging.INFO, logger="tunewatch._evaluation_events"):
            third = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert third.payload["policy"]["fired"]
        [event] = d.store.list_events(model=MODEL, type="drift_detected", limit=5)
        assert event.payload["evaluation"] == third.id
        said = [
            r.getMessage() for r in caplog.records if "settings changed since" in r.getMessage()
        ]
        assert len(said) == 1  # once per model and settings in this process
    finally:
        d.close()


def test_a_decay_window_judged_under_another_objective_starts_no_streak(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Accuracy, then the 0/1 cost (the error rate, alarming as accuracy does) after a
    restart a day later: the first alarming window under the cost does not complete a
    streak with the accuracy's, the second does."""
    evaluation = {"window_rows": 100, "drift": {"enabled": False}, "estimate": {"enabled": False}}
    d = _daemon(tmp_path, evaluation, model={"objective": {"name": "accuracy"}}, trained=trained)
    t0 = next_midnight()
    _write_days(d, t0, 62, seed=0, change_day=CHANGE_DAY)
    at = t0 + FIRST_RUN_DAY * DAY
    while True:  # runs under the accuracy until its first alarm
        d.evaluator.clock = lambda at=at: at
        accuracy = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"]
        at += timedelta(hours=12)
        if accuracy.payload["alarm"]:
            break
        assert at < t0 + 55 * DAY, "the accuracy never alarmed"
    assert not accuracy.payload["policy"]["fired"]
    d.close()

    at += timedelta(hours=12)  # a day's restart: the first run judges a newer window
    cost = {"name": "cost", "params": {"cost_matrix": [[0.0, 1.0], [1.0, 0.0]]}}
    d = _daemon(tmp_path, evaluation, model={"objective": cost})
    try:
        windows: set[str] = set()  # the newest matured windows of alarming cost verdicts
        reasons: list[str] = []  # the policy's, on the runs of the first of them
        while not d.store.list_events(model=MODEL, type="decay_detected", limit=1):
            assert at < t0 + 62 * DAY, "the cost never raised decay_detected"
            d.evaluator.clock = lambda at=at: at
            row = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"]
            at += timedelta(hours=12)
            if row.payload["alarm"]:
                windows.add(row.payload["last_request_at"])
                policy = row.payload["policy"]
                assert policy["fired"] == (len(windows) == 2), (len(windows), policy)
                if len(windows) == 1:
                    reasons.append(policy["reason"])
        assert reasons and all("settings changed" in r for r in reasons), reasons
    finally:
        d.close()


def _verdict(i: int, payload: dict[str, Any]) -> EvaluationRow:
    """Drift verdict ``i`` (a later one, a larger ``i``) alarming over its own minute."""
    span = {
        "first_request_at": (T0 + timedelta(minutes=i)).isoformat(),
        "last_request_at": (T0 + timedelta(minutes=i, seconds=30)).isoformat(),
    }
    return EvaluationRow(
        i, MODEL, 1, "drift", "ok", None, T0 + timedelta(minutes=i), {**payload, **span}, T0
    )


def test_a_verdict_stored_before_verdicts_recorded_their_settings_counts_as_before() -> None:
    settings = drift_settings(EvaluationConfig().drift)
    policy = EventPolicy(event="drift_detected", kind="drift", settings=settings)
    newest = _verdict(2, {"alarm": True, **settings.payload()})
    older = _verdict(1, {"alarm": True})  # an older release's verdict: no fingerprint
    decision = decide(policy, [newest, older], last_event_at=None, now=T0 + DAY)
    assert (decision.fire, decision.streak) == (True, 2)


def test_a_verdict_judged_under_other_settings_ends_the_streak_saying_what_changed() -> None:
    settings = drift_settings(EvaluationConfig().drift)
    before = drift_settings(EvaluationConfig(drift={"share_threshold": 0.2}).drift)
    policy = EventPolicy(event="drift_detected", kind="drift", settings=settings)
    newest = _verdict(3, {"alarm": True, **settings.payload()})
    older = _verdict(2, {"alarm": True, **before.payload()})
    oldest = _verdict(1, {"alarm": True, **settings.payload()})
    decision = decide(policy, [newest, older, oldest], last_event_at=None, now=T0 + DAY)
    assert (decision.fire, decision.streak, decision.held) == (False, 1, "settings_changed")
    assert decision.settings_changed == ("share_threshold: 0.2 -> 0.5",)
    assert "share_threshold: 0.2 -> 0.5" in decision.reason


@pytest.mark.parametrize(
    ("before", "now", "keeps"),
    [
        pytest.param(("log_loss", {}), ("brier", {}), True, id="log_loss_to_brier"),
        pytest.param(("accuracy", {"threshold": 0.5}), ("roc_auc", {}), True, id="to_auc"),
        pytest.param(
            ("accuracy", {"threshold": 0.5}), ("accuracy", {"threshold": 0.7}), False, id="t07"
        ),
    ],
)
def test_an_estimate_streak_ends_only_when_the_decisions_it_is_of_change(
    before: tuple[str, dict[str, Any]], now: tuple[str, dict[str, Any]], keeps: bool
) -> None:
    """The estimated accuracy is of the objective's decisions (its threshold; 0.5 for one
    that decides nothing): switching log loss for Brier ended the streak though no
    estimate changed, and a real drop was reported a window late."""
    estimate = EvaluationConfig().estimate
    old = estimate_settings(ObjectiveConfig(name=before[0], params=before[1]), estimate)
    new = estimate_settings(ObjectiveConfig(name=now[0], params=now[1]), estimate)
    policy = EventPolicy(event="estimate_dropped", kind="estimate", settings=new)
    rows = [
        dataclasses.replace(_verdict(2, {"alarm": True, **new.payload()}), kind="estimate"),
        dataclasses.replace(_verdict(1, {"alarm": True, **old.payload()}), kind="estimate"),
    ]
    decision = decide(policy, rows, last_event_at=None, now=T0 + DAY)
    assert (decision.streak == 2) is keeps, decision.reason


def _decay_verdict(i: int, settings: AlarmSettings) -> EvaluationRow:
    return dataclasses.replace(_verdict(i, {"alarm": True, **settings.payload()}), kind="decay")


@pytest.mark.parametrize(
    ("changed", "shown"),
    [
        pytest.param({"window_s": 3600.0}, "window_s: 86400.0 -> 3600.0", id="window_s"),
        pytest.param({"maturity_s": 0.0}, "maturity_s: 86400.0 -> 0.0", id="maturity_s"),
        pytest.param({"horizon_windows": 10}, "horizon_windows: 30 -> 10", id="horizon"),
        pytest.param({"min_windows": 5}, "min_windows: 3 -> 5", id="min_windows"),
    ],
)
def test_a_decay_streak_ends_when_the_windows_its_trend_is_fitted_on_change(
    changed: dict[str, Any], shown: str
) -> None:
    """The trend is fitted on other windows (their length, their labels' maturity, how
    many, from which on): a verdict judged on the old ones is not evidence for the new."""
    objective = ObjectiveConfig(name="accuracy")
    old = decay_settings(objective, EvaluationConfig().decay)
    new = decay_settings(objective, EvaluationConfig(decay=changed).decay)
    policy = EventPolicy(event="decay_detected", kind="decay", settings=new)
    rows = [_decay_verdict(2, new), _decay_verdict(1, old)]
    decision = decide(policy, rows, last_event_at=None, now=T0 + DAY)
    assert (decision.fire, decision.streak, decision.held) == (False, 1, "settings_changed")
    assert decision.settings_changed == (shown,)


def test_a_verdict_recording_fewer_settings_counts_when_those_it_recorded_agree() -> None:
    """A verdict stored by a release that recorded fewer of the settings (decay's before it
    recorded its windows) is judged on those it recorded: an upgrade alone ends no
    streak, and a change of one it recorded still does."""
    objective = ObjectiveConfig(name="accuracy")
    new = decay_settings(objective, EvaluationConfig().decay)
    recorded = {k: v for k, v in new.values.items() if k in ("objective", "threshold")}
    policy = EventPolicy(event="decay_detected", kind="decay", settings=new)
    rows = [_decay_verdict(2, new), _decay_verdict(1, AlarmSettings.of(recorded))]
    assert decide(policy, rows, last_event_at=None, now=T0 + DAY).streak == 2

    other = AlarmSettings.of({**recorded, "objective": "roc_auc"})
    rows = [_decay_verdict(2, new), _decay_verdict(1, other)]
    decision = decide(policy, rows, last_event_at=None, now=T0 + DAY)
    assert (decision.streak, decision.settings_changed) == (
        1,
        ('objective: "roc_auc" -> "accuracy"',),
    )
