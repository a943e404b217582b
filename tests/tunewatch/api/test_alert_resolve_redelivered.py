"""A resolve delivered again (Alertmanager's retry after a timeout, an HA peer's
notification, the group's next notification) is no alert "resolved, never seen firing":
only a resolve of an episode no delivery saw firing is ignored and counted as
``resolved_unseen``. Every repeat of a resolve was reported in ``ignored`` and counted
there, although its episode had fired and been acted on."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.api.alert_helpers import alert, payload, retune_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts


def _unseen(daemon: Daemon) -> float:
    registry = daemon.metrics.registry
    value = registry.get_sample_value(
        "tunewatch_alerts_ignored_total", {"reason": "resolved_unseen"}
    )
    return value or 0.0


def test_a_resolve_delivered_again_is_not_ignored_as_never_seen_firing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    ctx = daemon.app.ctx
    resolved = payload(alert("fp1", status="resolved"))
    try:
        assert len(handle_alerts(ctx, payload(alert("fp1")))["jobs"]) == 1
        assert handle_alerts(ctx, resolved)["ignored"] == []
        again = handle_alerts(ctx, resolved)
        assert again["ignored"] == [] and again["received"] == 1
        assert handle_alerts(ctx, resolved)["ignored"] == []
        assert _unseen(daemon) == 0
    finally:
        daemon.close()


def test_a_resolve_of_an_episode_never_seen_firing_is_ignored_once(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Its repeats are of an episode the first resolve stored resolved: listed and
    counted once, not once per delivery."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    ctx = daemon.app.ctx
    unseen = payload(alert("fp-unseen", status="resolved"), alert("fp-fired"))
    try:
        first = handle_alerts(ctx, unseen)
        assert first["ignored"] == ["TunewatchDriftHigh: resolved, never seen firing"]
        assert _unseen(daemon) == 1
        assert handle_alerts(ctx, unseen)["ignored"] == []
        assert _unseen(daemon) == 1
    finally:
        daemon.close()
