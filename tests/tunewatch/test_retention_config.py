"""`recording.retention_days`: refused when shorter than what the daemon reads back, and
the leader's daily purge scheduled only when it is set."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.store.record_helpers import request_record
from tunewatch import ConfigError, build_config
from tunewatch._scheduler import Scheduler
from tunewatch.store import Store

# A decay horizon of two days (48 hourly windows), labels mature within the hour.
_SHORT_DECAY = {"window_s": 3600, "horizon_windows": 48, "maturity_s": 3600}


def _config(tmp_path: Path, retention_days: float | None, **model: Any) -> Any:
    raw: dict[str, Any] = {"data_dir": str(tmp_path), "models": [{"name": "m", **model}]}
    if retention_days is not None:
        raw["recording"] = {"retention_days": retention_days}
    return build_config(raw, env={})


def test_retention_shorter_than_the_decay_horizon_is_refused(tmp_path: Path) -> None:
    # the default horizon: 86400 s x 30 windows = 30 days
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 7, task="binary")
    message = str(info.value)
    assert "recording.retention_days" in message
    assert "models.0.evaluation.decay" in message and "horizon_windows" in message
    assert "2678400" in message and "604800" in message


def test_retention_of_exactly_the_decay_horizon_is_refused(tmp_path: Path) -> None:
    """Decay's windows lie on fixed edges: the horizon's oldest begins up to a window
    before ``horizon_windows`` windows ago, and a purge at exactly the horizon emptied
    part of it (a cold run then judged it on 12 requests of 288)."""
    decay = {**_SHORT_DECAY, "maturity_s": 60}
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 2, task="binary", evaluation={"decay": decay, "label_delay_alarm_s": 60})
    assert "(`horizon_windows` + 1)" in str(info.value)
    hour = 1 / 24
    accepted = _config(
        tmp_path, 2 + hour, task="binary", evaluation={"decay": decay, "label_delay_alarm_s": 60}
    )
    assert accepted.recording.retention_days == 2 + hour


def test_retention_shorter_than_the_label_maturity_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(
            tmp_path,
            5,
            task="binary",
            evaluation={"decay": _SHORT_DECAY, "label_delay_alarm_s": 86_400},
            comparison={"label_maturity_s": 10 * 86_400},
        )
    message = str(info.value)
    assert "recording.retention_days" in message
    assert "models.0.comparison.label_maturity_s" in message and "864000" in message


def test_retention_shorter_than_the_label_delay_alarm_is_refused(tmp_path: Path) -> None:
    """The alarm reads requests at least `label_delay_alarm_s` old: purged sooner, it
    could never fire (insufficient data for good)."""
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 5, task="binary", evaluation={"decay": _SHORT_DECAY})
    message = str(info.value)
    assert "recording.retention_days" in message
    assert "models.0.evaluation.label_delay_alarm_s" in message and "604800" in message


def test_retention_at_least_every_read_back_is_accepted(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        3,
        task="binary",
        evaluation={"decay": _SHORT_DECAY, "label_delay_alarm_s": 2 * 86_400},
        comparison={"label_maturity_s": 86_400},
    )
    assert config.recording.retention_days == 3


def test_no_retention_keeps_everything_and_is_the_default(tmp_path: Path) -> None:
    assert _config(tmp_path, None, task="binary").recording.retention_days is None


@pytest.mark.parametrize("days", [0, -1, 1e9], ids=["zero", "negative", "past_ten_years"])
def test_retention_outside_its_bounds_is_refused(tmp_path: Path, days: float) -> None:
    with pytest.raises(ConfigError, match=r"recording\.retention_days"):
        build_config({"data_dir": str(tmp_path), "recording": {"retention_days": days}}, env={})


def test_the_leader_schedules_no_purge_without_retention(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    scheduler = Scheduler(store=store, config=config, jobs=[])
    scheduler.start()
    try:
        assert scheduler.leader
        assert "purge_records" not in scheduler.scheduled()
    finally:
        scheduler.shutdown()
        store.close()


def test_the_leader_purges_records_older_than_the_retention(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path), "recording": {"retention_days": 30}}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    now = store.database_now()
    old = replace(request_record("old"), received_at=now - timedelta(days=31))
    store.write_records([old, request_record("new")], [])
    scheduler = Scheduler(store=store, config=config, jobs=[])
    scheduler.start()
    try:
        assert scheduler.leader
        job = scheduler._aps.get_job("purge_records")
        assert job is not None and job.coalesce and job.max_instances == 1
        assert "interval[1 day" in str(job.trigger)
        job.func()  # the daily run fires (the first runs soon after the takeover too)
        assert store.request_ids("m") == {"new"}
        entries = store.audit_log(action="purge_records")
        assert entries and entries[0].actor == "scheduler"
    finally:
        scheduler.shutdown()
        store.close()


def test_a_new_leader_purges_a_day_after_the_last_audited_purge(tmp_path: Path) -> None:
    """The purge's interval counts from its last run, as the audit log records it: counted
    from each takeover, a daemon restarted more often than daily would never purge."""
    config = build_config({"data_dir": str(tmp_path), "recording": {"retention_days": 30}}, env={})
    store = Store.open(config.store_url)
    store.purge_records(before=store.database_now() - timedelta(days=30))
    (entry,) = store.audit_log(action="purge_records")
    scheduler = Scheduler(store=store, config=config, jobs=[])
    scheduler.start()
    try:
        job = scheduler._aps.get_job("purge_records")
        assert job is not None and job.next_run_time == entry.at + timedelta(days=1)
    finally:
        scheduler.shutdown()
        store.close()
