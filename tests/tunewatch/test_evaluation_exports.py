"""Which process exports the evaluation figures: the scheduler's leader only, from its
first moment as leader, and never a process that does not lead (a scoring replica with
``scheduler.enabled: false`` asked for an evaluation through the API)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Clock, feed, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._scheduler import Scheduler
from tunewatch.store import LabelItem

# an hour between scheduled runs: none runs while a test looks
MODELS = [{"name": MODEL, "task": "binary", "evaluation": {"interval_s": 3600, "window_rows": 600}}]
# every gauge the evaluation exports (ServingMetrics.clear_evaluation drops them all)
EVALUATION_GAUGES = (
    "tunewatch_drift_share",
    "tunewatch_drift_detected",
    "tunewatch_feature_drift_score",
    "tunewatch_feature_drifted",
    "tunewatch_objective_realised",
    "tunewatch_objective_estimated",
    "tunewatch_estimate_realised",
    "tunewatch_estimate_reference",
    "tunewatch_decay_slope_per_day",
    "tunewatch_label_coverage",
    "tunewatch_label_delay_seconds",
    "tunewatch_version_latency_p99_seconds",
    "tunewatch_alarm",
)


def _evaluation_lines(url: str) -> list[str]:
    text = httpx.get(f"{url}/metrics").text
    return sorted(line for line in text.splitlines() if line.startswith(EVALUATION_GAUGES))


def _drifted(d: Daemon, clock: Clock, windows: int = 2) -> None:
    """Feed ``windows`` drifted windows, each evaluated: the drift policy's two windows."""
    for k in range(windows):
        feed(d, clock, k * 600, 600, shift=1.0, seed=100 + k)
        d.evaluator.evaluate(MODEL)


@pytest.mark.parametrize("leads", [False, True], ids=["replica", "leader"])
def test_an_evaluation_asked_of_a_process_leaves_its_gauges_only_if_it_leads(
    trained: list[ExampleModel], tmp_path: Path, leads: bool
) -> None:
    """Only a lease tick dropped the figures, and a replica without a scheduler has none:
    its drift alarm from one `POST /evaluate` fed the shipped `max by (model)` alerts for
    as long as it ran, firing after the leader said the drift was gone. The leader keeps
    them."""
    extra: dict[str, object] = {"models": MODELS}
    if not leads:
        extra["scheduler"] = {"enabled": False}
    daemon, tokens = make_daemon(tmp_path, trained, extra=extra)
    clock = Clock()
    with BackgroundServer(daemon.app) as server:
        assert daemon.scheduler.leader is leads
        for k in range(2):
            feed(daemon, clock, k * 600, 600, shift=1.0, seed=100 + k)
            r = httpx.post(
                f"{server.url}/v1/models/{MODEL}/evaluate",
                headers={"Authorization": f"Bearer {tokens['operator']}"},
                timeout=120,
            )
            assert r.status_code == 200, r.text
        drift = next(e for e in r.json()["evaluations"] if e["kind"] == "drift")
        assert drift["payload"]["alarm"] is True  # it found the drift, and stored it
        lines = _evaluation_lines(server.url)
    if leads:
        assert 'tunewatch_alarm{event="drift_detected",model="credit"} 1.0' in lines
        assert 'tunewatch_drift_detected{model="credit"} 1.0' in lines
    else:
        assert lines == []


def test_a_new_leader_exports_the_stored_alarm_before_its_first_evaluation(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A new leader (a restart, a deploy, a failover) exported nothing until its first
    scheduled evaluation, an interval after the last run: the series went stale, every
    alert on tunewatch_alarm resolved and fired again as a new episode, and `for:` timers
    restarted."""
    extra = {"scheduler": {"lease_ttl_s": 2}, "models": MODELS}
    first, _ = make_daemon(tmp_path, trained, extra=extra)
    with BackgroundServer(first.app) as server:
        assert first.scheduler.leader
        _drifted(first, Clock())
        before = _evaluation_lines(server.url)
        events = first.store.list_events(model=MODEL, limit=100)
    first.close()
    assert 'tunewatch_alarm{event="drift_detected",model="credit"} 1.0' in before
    assert 'tunewatch_drift_share{model="credit"} 1.0' in before
    assert [e.type for e in events if e.type == "drift_detected"] == ["drift_detected"]

    second = Daemon(build_config({"data_dir": str(tmp_path), **extra}, env={}), env={})
    runs = len(second.store.list_evaluations(MODEL, limit=1000))
    with BackgroundServer(second.app) as server:
        assert second.scheduler.leader
        after = _evaluation_lines(server.url)
        assert len(second.store.list_evaluations(MODEL, limit=1000)) == runs  # none ran
        # the takeover decided nothing: no event, no action recorded
        assert second.store.list_events(model=MODEL, limit=100) == events
    second.close()
    assert after == before  # every figure, the alarm recomputed by the policy


def _taken_over(d: Daemon) -> ServingMetrics:
    """The metrics of a new process's scheduler once it took the lease (no job runs)."""
    metrics = ServingMetrics()
    scheduler = Scheduler(store=d.store, config=d.config, jobs=[], metrics=metrics)
    scheduler.start()
    try:
        assert scheduler.leader and metrics.exports_evaluation
    finally:
        scheduler.shutdown()
    return metrics


def test_a_new_leader_holds_no_alarm_a_streak_did_not_complete(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The alarm is the policy's, not the newest window's: one drifted window of the two
    the drift policy needs is drift detected, and no alarm."""
    d, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}, "models": MODELS})
    _drifted(d, Clock(), windows=1)
    metrics = _taken_over(d)
    d.close()
    value = metrics.registry.get_sample_value
    assert value("tunewatch_drift_detected", {"model": MODEL}) == 1.0
    assert value("tunewatch_alarm", {"model": MODEL, "event": "drift_detected"}) == 0.0


def test_a_new_leader_exports_the_stored_decay_figures_as_the_run_did(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The slope is signed so that > 0 is getting worse (log loss rising), and the realised
    objective is the newest matured window's; a verdict of another objective than the
    one configured now exports neither."""
    d, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}, "models": MODELS})
    assert d.config.model_or_default(MODEL, "binary").objective.name == "log_loss"
    windows = [{"end": "-", "value": v, "n": 50, "coverage": 1.0} for v in (0.40, None, 0.45)]
    payload = {"alarm": False, "objective": "log_loss", "slope_per_day": 0.01, "windows": windows}
    now = datetime.now(UTC)
    d.store.add_evaluation(
        model=MODEL,
        version=1,
        kind="decay",
        status="ok",
        window_start=None,
        window_end=now,
        payload=payload,
    )
    value = _taken_over(d).registry.get_sample_value
    assert value("tunewatch_decay_slope_per_day", {"model": MODEL}) == 0.01
    realised = {"model": MODEL, "version": "1", "objective": "log_loss"}
    assert value("tunewatch_objective_realised", realised) == 0.45
    d.store.add_evaluation(
        model=MODEL,
        version=1,
        kind="decay",
        status="ok",
        window_start=None,
        window_end=now,
        payload={**payload, "objective": "accuracy"},
    )
    value = _taken_over(d).registry.get_sample_value
    d.close()
    assert value("tunewatch_decay_slope_per_day", {"model": MODEL}) is None
    assert value("tunewatch_objective_realised", {**realised, "objective": "accuracy"}) is None


def test_the_label_s_and_the_prediction_s_drift_are_exported_as_a_feature_s(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """``tunewatch_drift_share`` counts the prediction and the label when drift tests
    them, and the shipped rule says ``tunewatch_feature_drifted`` names each column it
    counts: a label-only drift (concept drift) raised the share with every series at 0,
    naming nothing, by the run and by a new leader."""
    evaluation = {"interval_s": 3600, "window_rows": 600, "decay": {"maturity_s": 3600}}
    models = [{"name": MODEL, "task": "binary", "evaluation": evaluation}]
    d, _ = make_daemon(tmp_path, trained, extra={"models": models, "tuning": {"workers": 0}})
    with BackgroundServer(d.app) as server:
        feed(d, Clock(), 0, 600, shift=0.0, seed=1, labels=False)  # features as the reference
        d.store.add_labels(MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(600)])
        [drift] = [r for r in d.evaluator.evaluate(MODEL) if r.kind == "drift"]
        lines = _evaluation_lines(server.url)
    d.close()
    assert drift.payload["drifted_columns"] == [LABEL_COLUMN]
    assert f'tunewatch_feature_drifted{{feature="{LABEL_COLUMN}",model="credit"}} 1.0' in lines
    assert f'tunewatch_feature_drifted{{feature="{PREDICTION_COLUMN}",model="credit"}} 0.0' in lines

    extra = {"data_dir": str(tmp_path), "scheduler": {"enabled": False}, "models": models}
    second = Daemon(build_config(extra, env={}), env={})
    try:
        value = _taken_over(second).registry.get_sample_value
    finally:
        second.close()
    assert value("tunewatch_feature_drifted", {"model": MODEL, "feature": LABEL_COLUMN}) == 1.0
