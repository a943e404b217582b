"""The newest verdict is the one stored last, whatever the evaluating host's clock says.

A verdict's ``window_end`` is the evaluating host's clock. When that clock steps back
(NTP correcting one that ran an hour fast) or the lease fails over to a host whose clock
is behind, every verdict stored since has an earlier ``window_end`` than the ones before
it. The policies took the first row by ``window_end`` for the newest: for as long as the
step, they decided on the stale verdicts, and a real drift raised no event and held no
alarm. Requests are stamped by a scoring host whose clock is right throughout."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch import _evaluation_history as evaluation_history
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._evaluation_events import export_stored
from tunewatch._example import ExampleModel
from tunewatch._policies import evaluation_policies
from tunewatch.store import EvaluationRow

WINDOW = 300  # rows per window, fed at one request a second

# (the evaluating clock's offset from the scoring clock while the stationary windows
# are evaluated, then while the drifted ones are)
STEPS = {
    "ntp-steps-back-an-hour": (timedelta(hours=1), timedelta(0)),
    "failover-to-a-clock-a-day-behind": (timedelta(0), -timedelta(days=1)),
}


def _daemon(tmp_path: Path, store_url: str, trained: list[ExampleModel]) -> Daemon:
    """A daemon whose drift event fires at the second drifted window."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "store": {"url": store_url},
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "drift": {"consecutive": 2, "cooldown_minutes": 600},
                    },
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


class _Hosts:
    """The scoring host's clock (right throughout) and the evaluating host's, ``offset``
    from it as each window is evaluated."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.scoring, self.evaluating = Clock(), Clock()
        d.evaluator.clock = self.evaluating
        self.windows = 0

    def window(self, *, shift: float, offset: timedelta) -> dict[str, EvaluationRow]:
        """Feed one window of requests and evaluate it; the run's rows by kind."""
        w = self.windows
        self.windows += 1
        feed(self.d, self.scoring, w * WINDOW, WINDOW, shift=shift, seed=100 + w)
        self.evaluating.now = self.scoring.now + offset
        return {r.kind: r for r in self.d.evaluator.evaluate(MODEL)}


def _through_the_step(d: Daemon, step: str) -> tuple[_Hosts, EvaluationRow]:
    """Three stationary windows, then one drifted, the evaluating clock stepping back
    between them (:data:`STEPS`); the drifted window's drift verdict."""
    before, after = STEPS[step]
    hosts = _Hosts(d)
    for _ in range(3):
        assert hosts.window(shift=0.0, offset=before)["drift"].payload["alarm"] is False
    drifted = hosts.window(shift=2.0, offset=after)["drift"]
    assert drifted.status == "ok" and drifted.payload["alarm"] is True
    return hosts, drifted


def _alarm(metrics: ServingMetrics) -> float | None:
    return metrics.registry.get_sample_value(
        "tunewatch_alarm", {"model": MODEL, "event": "drift_detected"}
    )


@pytest.mark.parametrize("step", list(STEPS))
def test_drift_event_fires_on_the_verdicts_stored_last_after_the_evaluating_clock_steps_back(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, step: str
) -> None:
    d = _daemon(tmp_path, store_url, trained)
    try:
        hosts, _ = _through_the_step(d, step)
        assert d.store.list_events(model=MODEL, type="drift_detected", limit=10) == []
        assert _alarm(d.metrics) == 0.0  # one drifted window of the two the policy needs

        second = hosts.window(shift=2.0, offset=STEPS[step][1])["drift"]
        events = d.store.list_events(model=MODEL, type="drift_detected", limit=10)
        assert [e.payload["evaluation"] for e in events] == [second.id]
        assert _alarm(d.metrics) == 1.0
    finally:
        d.close()


@pytest.mark.parametrize("step", list(STEPS))
def test_a_new_leader_exports_the_verdicts_stored_last_after_the_evaluating_clock_stepped_back(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, step: str
) -> None:
    """A takeover exports the figures of the drift verdict stored last (drift detected),
    not those of the stationary window the fast clock stamped later."""
    d = _daemon(tmp_path, store_url, trained)
    try:
        _, drifted = _through_the_step(d, step)
        metrics = ServingMetrics()
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        export_stored(d.store, metrics, model, cfg, now=drifted.window_end)
    finally:
        d.close()
    value = metrics.registry.get_sample_value
    assert value("tunewatch_drift_detected", {"model": MODEL}) == 1.0
    assert value("tunewatch_drift_share", {"model": MODEL}) == drifted.payload["drifted_share"]
    assert _alarm(metrics) == 0.0  # the streak is one window: drift detected, no alarm


def test_a_quiet_period_stored_after_the_clock_stepped_back_ends_the_streak_unread(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The policy reads the verdicts stored last, at most its look-back of them, whatever
    their ``window_end``: runs of a leader a day behind that found no request, more than
    the look-back, end the streak of the drifted window stored before them."""
    d = _daemon(tmp_path, store_url, trained)
    try:
        hosts, drifted = _through_the_step(d, "ntp-steps-back-an-hour")
        [policy] = [
            p for p in evaluation_policies(d.config.models[0].evaluation) if p.kind == "drift"
        ]
        behind = drifted.window_end - timedelta(days=1)
        for i in range(policy.lookback + 10):
            d.store.add_evaluation(
                model=MODEL,
                version=drifted.version,
                kind="drift",
                status="insufficient_data",
                window_start=None,
                window_end=behind + timedelta(minutes=5 * i),
                payload={"alarm": False, "reason": "no requests in the window"},
            )
        read: list[EvaluationRow] = []
        stored_last = evaluation_history.stored_last

        def counting(*args: Any, **kwargs: Any) -> list[EvaluationRow]:
            rows = stored_last(*args, **kwargs)
            read.extend(r for r in rows if r.kind == "drift")
            return rows

        monkeypatch.setattr(evaluation_history, "stored_last", counting)
        again = hosts.window(shift=2.0, offset=-timedelta(days=1))["drift"]
        assert again.payload["alarm"] is True
        assert d.store.list_events(model=MODEL, type="drift_detected", limit=10) == []
        assert len(read) == policy.lookback
        assert read[0].id == again.id and drifted.id not in {r.id for r in read}
    finally:
        d.close()


@pytest.mark.parametrize("step", list(STEPS))
def test_a_new_leader_times_its_next_evaluation_from_the_run_stored_last(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, step: str
) -> None:
    """The scheduler's first run of a model is due an interval after its last evaluation:
    that is the telemetry row stored last, not the one with the latest ``window_end``."""
    d = _daemon(tmp_path, store_url, trained)
    try:
        _through_the_step(d, step)
        stored_last = evaluation_history.latest(d.store, MODEL, "telemetry")
        assert stored_last is not None
        assert d._last_evaluation(MODEL) == stored_last.created_at
    finally:
        d.close()
