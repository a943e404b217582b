"""The scheduler runs in UTC whatever the host's zone is called: a POSIX TZ string
(``UTC0``, ``CET-1CEST,M3.5.0,M10.5.0/3``), valid for libc, is no zoneinfo name, and an
interval trigger built without a zone asked tzlocal for the host's, which refused it: the
daemon did not start ("Application startup failed", exit 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tzlocal
import tzlocal.unix

from tunewatch._config import build_config
from tunewatch._scheduler import PerModelJob, Scheduler
from tunewatch._scheduler_jobs import due_after
from tunewatch.store import Store


@pytest.fixture(params=["UTC0", "CET-1CEST,M3.5.0,M10.5.0/3"])
def posix_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``TZ`` set to a POSIX string, and tzlocal's cache empty, as in a daemon just
    started on such a host (restored afterwards)."""
    monkeypatch.setenv("TZ", request.param)
    monkeypatch.setattr(tzlocal.unix, "_cache_tz", None)
    monkeypatch.setattr(tzlocal.unix, "_cache_tz_name", None)
    return str(request.param)


def test_an_interval_is_due_after_its_seconds_under_a_posix_zone(posix_zone: str) -> None:
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # CET's spring-forward night
    assert due_after(3600.0, now) == now + timedelta(hours=1)


def test_the_scheduler_starts_under_a_posix_zone(posix_zone: str, tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        ran: list[str] = []
        job = PerModelJob("evaluate", lambda _config: 60.0, ran.append)
        scheduler = Scheduler(store=store, config=config, jobs=[job])
        scheduler.start()
        try:
            assert scheduler.scheduled()
        finally:
            scheduler.shutdown()
    finally:
        store.close()
