"""Standing re-tuning schedules: fixed job ids, coalesced misses, cron or interval."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel


def test_cron_schedule_gets_a_fixed_coalescing_job_that_queues_a_retune(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "tuning": {"workers": 0},
            "models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_cron": "0 3 * * 0"}}],
        },
    )
    daemon.start()
    try:
        assert daemon.scheduler.leader
        assert "retune_schedule:credit" in daemon.scheduler.scheduled()
        job = daemon.scheduler._aps.get_job("retune_schedule:credit")
        assert job is not None and job.coalesce and job.max_instances == 1
        assert "cron" in str(job.trigger) and "hour='3'" in str(job.trigger)
        daemon.scheduler._lead()  # a later leadership tick keeps the same id, adds nothing
        assert daemon.scheduler.scheduled().count("retune_schedule:credit") == 1
        job.func()  # the schedule fires
        (queued,) = daemon.store.list_jobs(model=MODEL)
        assert queued.trigger["event"] == "schedule"
    finally:
        daemon.close()


def test_models_without_a_schedule_get_no_retune_job(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    daemon.start()
    try:
        # launch_jobs runs with no local workers too: it fails jobs whose remote worker died.
        assert daemon.scheduler.scheduled() == [
            "compare:credit",
            "evaluate:credit",
            "launch_jobs",
            "leadership",
        ]
    finally:
        daemon.close()
