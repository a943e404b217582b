"""Alerts of one model firing together (one per region, say, in one group) get one retune
after the cool-down, not one each: an owed episode is settled by a retune of its model
queued after the episode was received.

The first alert queued a retune and the others were owed; each later repeat of the group
queued one more per passed cool-down, the same incident retuned every repeat (4 h with
Alertmanager's defaults) for as long as it had alerts left owed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from tests.tunewatch.api.alert_helpers import alert, job_fingerprints, payload, retune_daemon
from tests.tunewatch.conftest import MODEL
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts
from tunewatch.store._schema import jobs


def _age_jobs(daemon: Daemon, by: timedelta) -> None:
    """Move the jobs ``by`` into the past, as if that long had passed since (cool-downs
    are timed by the database's clock)."""
    for job in daemon.store.list_jobs(model=MODEL):
        with daemon.store.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(created_at=job.created_at - by)
            )


def test_alerts_of_a_model_firing_together_get_one_retune_after_the_cool_down_not_one_each(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=60)
    ctx = daemon.app.ctx
    group = payload(alert("eu"), alert("us"), alert("ap"))
    try:
        assert len(handle_alerts(ctx, payload(alert("eu")))["jobs"]) == 1
        # eu's retune done (while it is queued, us and ap are its duplicates: see below)
        [eu_job] = daemon.store.list_jobs(model=MODEL)
        daemon.store.finish_job(eu_job.id, status="succeeded", result={})
        assert handle_alerts(ctx, group)["jobs"] == []  # us and ap cool down
        _age_jobs(daemon, timedelta(minutes=61))
        # us's retune, queued after ap was received: it settles ap too
        assert len(handle_alerts(ctx, group)["jobs"]) == 1
        _age_jobs(daemon, timedelta(minutes=61))
        assert handle_alerts(ctx, group)["jobs"] == []
        assert job_fingerprints(daemon) == ["eu", "us"]
        events = daemon.store.list_events(model=MODEL, limit=100)
        assert sorted(e.type for e in events) == sorted(
            ["alert_received"] * 3
            + ["action_suppressed"] * 2
            + ["action_taken"] * 2
            + ["action_duplicate"]
        )
        [us_job] = [
            j.id for j in daemon.store.list_jobs(model=MODEL) if j.trigger["fingerprint"] == "us"
        ]
        [settled] = [e for e in events if e.type == "action_duplicate"]
        assert settled.payload["job"] == us_job  # ap's, settled by us's retune
    finally:
        daemon.close()


def test_alerts_of_a_model_firing_while_its_retune_is_queued_are_its_duplicates(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=10, cooldown=0)
    ctx = daemon.app.ctx
    group = payload(alert("eu"), alert("us"), alert("ap"))
    try:
        [job] = handle_alerts(ctx, group)["jobs"]
        _age_jobs(daemon, timedelta(minutes=61))
        assert handle_alerts(ctx, group)["jobs"] == []  # every episode decided
        assert job_fingerprints(daemon) == ["eu"]
        events = daemon.store.list_events(model=MODEL, limit=100)
        assert sorted(e.type for e in events) == sorted(
            ["alert_received"] * 3 + ["action_taken"] + ["action_duplicate"] * 2
        )
        assert {e.payload["job"] for e in events if e.type == "action_duplicate"} == {job}
    finally:
        daemon.close()
