"""A policy that holds its event back says why: the decision of each policy (fired or
not, and the reason) is stored on the run's verdict of its kind (the evaluations API
lists it), is printed by ``tunewatch evaluate`` and logged once when it starts holding an
alarming event back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from html import escape
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import Clock, feed, make_daemon
from tests.tunewatch.test_evaluation import _champion_daemon
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data

MODEL = "credit"
W = 600
EVALUATION = {
    "window_rows": W,
    "drift": {"consecutive": 2, "cooldown_minutes": 600},
    "decay": {"enabled": False},
    "estimate": {"enabled": False},
}


@pytest.fixture
def drifted(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, Clock]]:
    """A daemon whose drift policy has just raised drift_detected on two drifted windows."""
    d = _champion_daemon(trained, tmp_path, EVALUATION)
    d.evaluator.clock = clock = Clock()
    for w in range(2):
        feed(d, clock, w * W, W, shift=1.0, seed=900 + w)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
    assert rows["drift"].payload["policy"] == {
        "event": "drift_detected",
        "fired": True,
        "reason": "2 consecutive alarming drift windows",
        "streak": 2,
        "consecutive": 2,
    }
    yield d, clock
    d.close()


def test_an_alarming_run_inside_the_cool_down_returns_why_no_event_followed(
    drifted: tuple[Daemon, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    d, clock = drifted
    caplog.set_level(logging.INFO, logger="tunewatch._evaluation_events")
    reasons = []
    for w in range(2, 5):
        feed(d, clock, w * W, W, shift=1.0, seed=900 + w)
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert drift.payload["alarm"]
        policy = drift.payload["policy"]
        assert not policy["fired"] and policy["event"] == "drift_detected"
        reasons.append(policy["reason"])
    # one new window is not a streak of new ones; two are, inside the cool-down
    assert reasons[0] == "1/2 consecutive alarming windows since the last event", reasons
    assert all(r.startswith("cooling down for another ") for r in reasons[1:]), reasons
    assert len(d.store.list_events(model=MODEL, type="drift_detected")) == 1
    held = [r.getMessage() for r in caplog.records if " held: " in r.getMessage()]
    # logged when the reason changed, not on every run
    assert len(held) == 2, held
    assert all("model=credit event=drift_detected held" in m for m in held), held
    assert reasons[0] in held[0] and "cooling down for another" in held[1]


def test_a_run_that_does_not_alarm_says_its_streak_and_logs_nothing(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = _champion_daemon(trained, tmp_path, EVALUATION)
    try:
        d.evaluator.clock = clock = Clock()
        caplog.set_level(logging.INFO, logger="tunewatch._evaluation_events")
        feed(d, clock, 0, W, shift=0.0, seed=7)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        stored = {k: d.store.get_evaluation(MODEL, r.id).payload for k, r in rows.items()}
    finally:
        d.close()
    policy = rows["drift"].payload["policy"]
    assert stored["drift"] == rows["drift"].payload  # the decision is stored with the row
    assert stored["labels"]["policy"] == rows["labels"].payload["policy"]
    assert "policy" not in stored["telemetry"]
    assert policy["fired"] is False and policy["streak"] == 0
    assert policy["reason"] == "0/2 consecutive alarming windows"
    assert rows["labels"].payload["policy"]["event"] == "label_delay_high"
    assert "policy" not in rows["telemetry"].payload  # no policy reads it
    assert not [r for r in caplog.records if " held: " in r.getMessage()]


def test_evaluate_prints_why_the_policy_held_its_event_back(
    drifted: tuple[Daemon, Clock], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, clock = drifted
    for w in range(2, 4):  # two new windows: the cool-down is all that holds the event
        feed(d, clock, w * W, W, shift=1.0, seed=900 + w)
        d.evaluator.evaluate(MODEL)
    feed(d, clock, 4 * W, W, shift=1.0, seed=904)
    d.close()
    config = tmp_path / "tw.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nscheduler: {{enabled: false}}\nmodels:\n"
        f"  - name: {MODEL}\n    task: binary\n    evaluation:\n"
        f"      window_rows: {W}\n      drift: {{consecutive: 2, cooldown_minutes: 600}}\n"
        "      decay: {enabled: false}\n      estimate: {enabled: false}\n"
    )
    capsys.readouterr()
    assert main(["--config", str(config), "evaluate", MODEL]) == 0
    out = capsys.readouterr().out.splitlines()
    drift = out.index(next(line for line in out if line.startswith("drift ")))
    assert out[drift + 1].startswith("  drift_detected held: cooling down for another "), out


def test_post_evaluate_returns_each_policy_s_decision(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The drifted batch read again raises no second event, and the answer says why."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "models": [
                {"name": MODEL, "task": "binary", "evaluation": {"drift": {"consecutive": 1}}}
            ],
        },
    )
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    try:
        with BackgroundServer(daemon.app) as server:
            x, _ = example_data(300, seed=11, shift=1.5)
            scored = httpx.post(
                f"{server.url}/v2/models/{MODEL}/infer",
                json={
                    "inputs": [
                        {"name": "input", "shape": [300, 8], "datatype": "FP32", "data": x.tolist()}
                    ]
                },
                headers={"Authorization": f"Bearer {tokens['scorer']}"},
            )
            assert scored.status_code == 200, scored.text
            answers = []
            for _ in range(2):
                r = httpx.post(
                    f"{server.url}/v1/models/{MODEL}/evaluate", headers=operator, timeout=60
                )
                assert r.status_code == 200, r.text
                [drift] = [e for e in r.json()["evaluations"] if e["kind"] == "drift"]
                answers.append(drift["payload"]["policy"])
            listed = httpx.get(
                f"{server.url}/v1/models/{MODEL}/evaluations",
                params={"kind": "drift"},
                headers=operator,
            )
            assert listed.status_code == 200, listed.text
            stored = [e["payload"]["policy"] for e in listed.json()["evaluations"]]
            overview = httpx.get(f"{server.url}/v1/dashboard/overview", headers=operator)
            assert overview.status_code == 200, overview.text
            [model] = overview.json()["models"]
            decision = model["latest_evaluations"]["drift"]["decision"]
            page = httpx.get(f"{server.url}/dashboard/", headers=operator)
            assert page.status_code == 200, page.text
    finally:
        daemon.close()
    assert answers[0]["fired"] and answers[0]["event"] == "drift_detected"
    assert not answers[1]["fired"]
    assert answers[1]["reason"] == "0/1 consecutive alarming windows since the last event"
    assert stored == answers[::-1]  # newest first, as each run's answer said
    # the alarm holds (it pages) on the batch the event rested on: held, and why
    assert decision == f"drift_detected held: {answers[1]['reason']}"
    assert escape(decision) in page.text  # the overview shows it under the verdict


def test_the_drift_listing_says_what_the_policy_did_with_each_stored_verdict(
    drifted: tuple[Daemon, Clock], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, clock = drifted
    feed(d, clock, 2 * W, W, shift=1.0, seed=902)
    d.evaluator.evaluate(MODEL)
    d.close()
    config = tmp_path / "tw.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nscheduler: {{enabled: false}}\nmodels:\n"
        f"  - name: {MODEL}\n    task: binary\n"
    )
    capsys.readouterr()
    assert main(["--config", str(config), "drift", MODEL]) == 0
    newest, *older = capsys.readouterr().out.splitlines()  # one line per verdict
    assert newest.endswith(
        "; drift_detected held: 1/2 consecutive alarming windows since the last event"
    ), newest
    assert older[0].endswith("; drift_detected raised: 2 consecutive alarming drift windows")
