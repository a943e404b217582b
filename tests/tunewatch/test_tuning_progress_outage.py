"""A tuning worker's heartbeat and progress reports during a store outage: one warning
for the outage, and one line when it ends. Each failed report logged its own, "progress
not updated" every second and "heartbeat not written" every ``heartbeat_s``: 3,900
lines an hour for each worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from retune._optuna import open_study
from tests.tunewatch.tcp_proxy import TcpProxy
from tunewatch._tuning_progress import Heartbeat, ProgressReporter
from tunewatch.store import Store

pytestmark = pytest.mark.postgres

STUDY = "credit-job1"


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[Store, int, list[TcpProxy]]]:
    """A store on PostgreSQL reached through a proxy (the list's last: one opened again
    on the same port is the database back), holding a running job: ``(store, job id,
    proxies)``."""
    url = make_url(pg_url)
    proxies = [TcpProxy((url.host or "127.0.0.1", url.port or 5432))]
    store = Store.open(url.set(port=proxies[0].port).render_as_string(hide_password=False))
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
        store.claim_job(job.id, "test:1")
        yield store, job.id, proxies
    finally:
        proxies[-1].close()
        store.close()


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tunewatch._tuning_progress" and r.levelno == level
    ]


def _outage(proxies: list[TcpProxy]) -> None:
    proxies[-1].close()


def _back(proxies: list[TcpProxy]) -> None:
    proxies.append(TcpProxy(proxies[-1].target, port=proxies[-1].port))


def test_progress_reports_failing_for_an_outage_log_one_warning_and_one_recovery(
    proxied: tuple[Store, int, list[TcpProxy]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, job_id, proxies = proxied
    storage = f"sqlite:///{tmp_path}/optuna.db"
    open_study(
        storage=storage,
        study_name=STUDY,
        seed=0,
        plan=None,
        pruner="none",
        heartbeat_interval=None,
    ).close()
    reporter = ProgressReporter(store, job_id, storage, STUDY, 10, None)
    caplog.set_level(logging.DEBUG, logger="tunewatch._tuning_progress")
    reporter._report()
    _outage(proxies)
    for _ in range(60):  # a minute of reports, one a second
        reporter._report()
    _back(proxies)
    reporter._report()
    [warning] = _lines(caplog, logging.WARNING)
    assert f"job={job_id}" in warning and "progress" in warning
    assert "database unavailable" in warning  # the store's reason
    [recovered] = _lines(caplog, logging.INFO)
    assert f"job={job_id}" in recovered and "recovered after 60 failures" in recovered
    assert store.get_job(job_id).progress["study"] == STUDY


def test_heartbeats_failing_for_an_outage_log_one_warning_and_one_recovery(
    proxied: tuple[Store, int, list[TcpProxy]], caplog: pytest.LogCaptureFixture
) -> None:
    store, job_id, proxies = proxied
    heartbeat = Heartbeat(store, job_id, 1)
    caplog.set_level(logging.DEBUG, logger="tunewatch._tuning_progress")
    heartbeat._beat()
    _outage(proxies)
    for _ in range(60):
        heartbeat._beat()
    _back(proxies)
    heartbeat._beat()
    [warning] = _lines(caplog, logging.WARNING)
    assert f"job={job_id}" in warning and "heartbeat" in warning
    [recovered] = _lines(caplog, logging.INFO)
    assert f"job={job_id}" in recovered and "recovered after 60 failures" in recovered
