"""A promotion re-exports the model's evaluation figures and alarms at once, as the store
holds them for the new champion: the replaced champion's per-version figures go, and each
alarm is the policy's over the new champion's verdicts (none yet: 0). They stayed until the
next scheduled evaluation, up to ``evaluation.interval_s`` later, and the drift alert kept
paging about a retired champion, while a restart on the same store exported neither."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import generate_latest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Clock, feed, make_daemon
from tests.tunewatch.test_evaluation_exports import EVALUATION_GAUGES, MODELS
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._evaluation import Evaluator
from tunewatch._evaluation_events import export_stored
from tunewatch._example import ExampleModel

ALARM = 'tunewatch_alarm{event="drift_detected",model="credit"}'


def _lines(metrics: ServingMetrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return sorted(line for line in text.splitlines() if line.startswith(EVALUATION_GAUGES))


def _drifted(d: Daemon) -> None:
    """Two drifted windows sharing no request, each evaluated: the drift policy's alarm."""
    clock = Clock()
    for k in range(2):
        feed(d, clock, k * 600, 600, shift=1.0, seed=100 + k)
        d.evaluator.evaluate(MODEL)


def _of_version_1(lines: list[str]) -> list[str]:
    return [line for line in lines if 'version="1"' in line and "objective" in line]


def _restarted(d: Daemon) -> list[str]:
    """The evaluation figures a new leader on the same store exports (a restart: the
    takeover's :func:`~tunewatch._evaluation_events.export_stored`)."""
    metrics = ServingMetrics()
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    export_stored(d.store, metrics, model, cfg, now=datetime.now(UTC))
    return _lines(metrics)


def test_a_promotion_through_the_api_drops_the_replaced_champions_figures_and_alarm(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Champion v1 with the drift alarm held, v2 promoted through the API: right after,
    no objective series of v1 and the alarm 0, the figures a restart would export."""
    d, tokens = make_daemon(tmp_path, trained, extra={"models": MODELS})
    with BackgroundServer(d.app) as server:
        assert d.scheduler.leader
        _drifted(d)
        before = _lines(d.metrics)
        r = httpx.post(
            f"{server.url}/v1/models/{MODEL}/versions/2/promote",
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            json={"reason": "retuned"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        text = httpx.get(f"{server.url}/metrics").text
        after = sorted(line for line in text.splitlines() if line.startswith(EVALUATION_GAUGES))
        restarted = _restarted(d)
    d.close()
    assert f"{ALARM} 1.0" in before
    assert _of_version_1(before)  # v1's estimate, at least, was exported
    assert 'tunewatch_champion_version{model="credit"} 2.0' in text
    assert _of_version_1(after) == []
    assert f"{ALARM} 0.0" in after
    assert after == restarted


def test_a_promotion_by_another_process_is_reexported_when_the_refresh_loads_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Another process (`tunewatch promote`, a replica's API) promoted: the leader's
    refresh loop loads the new champion and re-exports then."""
    d, _ = make_daemon(tmp_path, trained, extra={"models": MODELS})
    with BackgroundServer(d.app):
        assert d.scheduler.leader
        _drifted(d)
        assert f"{ALARM} 1.0" in _lines(d.metrics)
        outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="v2")
        assert outcome.status == "promoted"
        assert d.runtime.refresh() == [MODEL]
        after = _lines(d.metrics)
        restarted = _restarted(d)
    d.close()
    assert _of_version_1(after) == []
    assert f"{ALARM} 0.0" in after
    assert after == restarted


def test_a_promotion_on_a_process_that_does_not_lead_exports_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Only the leader exports the evaluation figures: a scoring replica's promotion
    exports none of the stored ones."""
    extra = {"scheduler": {"enabled": False}, "models": MODELS}
    d, tokens = make_daemon(tmp_path, trained, extra=extra)
    with BackgroundServer(d.app) as server:
        assert not d.metrics.exports_evaluation
        _drifted(d)
        d.metrics.clear_evaluation()
        r = httpx.post(
            f"{server.url}/v1/models/{MODEL}/versions/2/promote",
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            json={"reason": "retuned"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        after = _lines(d.metrics)
    d.close()
    assert after == []


def test_a_run_under_way_when_the_champion_changes_leaves_none_of_the_replaced_ones_figures(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A run judging v1 when v2 is promoted exports v1's figures (and its alarm) after
    the promotion's re-export: it exports the store's again as it ends."""
    d, _ = make_daemon(tmp_path, trained, extra={"models": MODELS})
    with BackgroundServer(d.app):
        assert d.scheduler.leader
        _drifted(d)
        feed(d, Clock(), 1200, 600, shift=1.0, seed=102)
        promoted: list[list[str]] = []

        def promoting() -> datetime:
            """The run's clock: its first reading (after the run read its champion)
            promotes v2, as an operator might then."""
            if not promoted:
                governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="v2")
                d.runtime.load(MODEL)
                promoted.append(_lines(d.metrics))
            return datetime.now(UTC)

        evaluator = Evaluator(
            store=d.store,
            artefacts=d.artefacts,
            config=d.config,
            metrics=d.metrics,
            dispatcher=d.dispatcher,
            clock=promoting,
        )
        rows = evaluator.evaluate(MODEL)
        after = _lines(d.metrics)
        restarted = _restarted(d)
    d.close()
    assert {row.version for row in rows} == {1}  # the run judged the replaced champion
    assert f"{ALARM} 0.0" in promoted[0]
    assert _of_version_1(after) == []
    assert f"{ALARM} 0.0" in after
    assert after == restarted
