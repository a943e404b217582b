"""A tuning job whose Optuna storage (``tuning.storage_url``) goes out of reach: its
worker waits for the storage and resumes the study, the job not failed. A 3 s PostgreSQL
restart failed the job for good ("StudyError: ... StorageInternalError: ... invalid data
in the commit, e.g. exceeding max length"). An outage past the worker's limit leaves the
job to the launcher, as a store outage does: running under the worker, whose exit is
reaped as a crash (queued again after a wait), never failed by the worker."""

from __future__ import annotations

import logging
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest
from sqlalchemy import make_url

from retune._optuna import close_storage, make_storage
from tests.conftest import drop_pg_schema
from tests.tunewatch.tcp_proxy import TcpProxy
from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._errors import TuningError
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_results import study_name

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
OUTAGE = "storage is unavailable"


@pytest.fixture
def optuna_pg(pg_available: None) -> Iterator[tuple[str, list[TcpProxy]]]:
    """An Optuna storage URL on a fresh PostgreSQL schema, reached through a proxy (the
    list's last: a proxy opened again on the same port is the database back)."""
    schema = f"fix_tuning_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    proxies = [TcpProxy(("127.0.0.1", 5432))]
    url = make_url(f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}")
    try:
        yield url.set(port=proxies[0].port).render_as_string(hide_password=False), proxies
    finally:
        proxies[-1].close()
        # the heartbeat thread the cut killed can leave its session in a transaction on
        # the study's tables, through the proxy, for good: the drop waited for it for ever
        drop_pg_schema(schema, end_holders=True)


class _BackOnOutage(logging.Handler):
    """The database comes back once the worker said it waits for it: a proxy on the
    same port again, at the worker's first outage warning."""

    def __init__(self, proxies: list[TcpProxy]) -> None:
        super().__init__(logging.WARNING)
        self.proxies = proxies
        self.restored = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if OUTAGE in record.getMessage() and not self.restored.is_set():
            self.restored.set()
            closed = self.proxies[-1]
            self.proxies.append(TcpProxy(closed.target, port=closed.port))


def _runner(d: Any, **kwargs: Any) -> TuningJobRunner:
    return TuningJobRunner(
        store=d.store,
        registry=d.registry,
        artefacts=d.artefacts,
        config=d.config,
        worker="test:1",
        **kwargs,
    )


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name in ("tunewatch._tuning", "tunewatch._tuning_outage") and r.levelno == level
    ]


@pytest.mark.postgres
# Optuna's heartbeat thread of the trial running at the cut dies on the outage (a
# traceback on the worker's stderr): the trial is failed as stale and retried
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_storage_outage_mid_study_is_waited_out_and_the_job_succeeds(
    trained: list[ExampleModel],
    tmp_path: Path,
    optuna_pg: tuple[str, list[TcpProxy]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proxies = optuna_pg
    raw = _config(tmp_path, max_trials=30)
    raw["tuning"] = {"workers": 0, "storage_url": url, "heartbeat_s": 1}
    d = _daemon(raw, trained)
    back = _BackOnOutage(proxies)
    cut_at: list[int] = []

    def outage(progress: dict[str, Any]) -> None:  # the database restarts mid-study
        if not cut_at and progress["trials"] >= 1:
            cut_at.append(progress["trials"])
            proxies[0].close()

    tuning_log = logging.getLogger("tunewatch._tuning_outage")
    tuning_log.addHandler(back)
    caplog.set_level(logging.INFO, logger="tunewatch._tuning_outage")
    try:
        queued = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert queued.job_id is not None
        job = _runner(d).run(queued.job_id, on_progress=outage)
        assert cut_at and cut_at[0] < 30  # cut while the study ran
        assert back.restored.is_set()
        assert job.status == "succeeded", job.error
        assert (job.crashes, job.error) == (0, None)
        [waited] = [m for m in _messages(caplog, logging.WARNING) if OUTAGE in m]
        # named by the driver's error: refused, or the connection cut under a query
        assert f"job={job.id} model={MODEL}" in waited
        assert re.search(rf"{OUTAGE}: \w+Error: ", waited), waited
        assert "invalid data" not in waited
        [recovered] = [m for m in _messages(caplog, logging.INFO) if "recovered" in m]
        assert f"job={job.id} model={MODEL}" in recovered
        backend = make_storage(url, heartbeat_interval=None)
        try:
            study = optuna.load_study(study_name=study_name(job), storage=backend)
            states = [t.state for t in study.get_trials(deepcopy=False)]
        finally:
            close_storage(backend)
        assert optuna.trial.TrialState.RUNNING not in states  # the lost one failed, retried
    finally:
        tuning_log.removeHandler(back)
        d.close()


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_a_storage_outage_past_the_limit_leaves_the_job_to_the_launcher_unfailed(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As a store outage: the job stays running under the worker, whose exit the launcher
    reaps as a crash (queued again after a wait); no ``retune_failed``."""
    raw = _config(tmp_path)
    storage = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
    raw["tuning"] = {"workers": 0, "storage_url": storage, "heartbeat_s": 1}
    d = _daemon(raw, trained)
    caplog.set_level(logging.INFO, logger="tunewatch._tuning")
    try:
        queued = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert queued.job_id is not None
        with pytest.raises(TuningError) as info:
            _runner(d, storage_outage_limit_s=0.0).run(queued.job_id)
        assert "the study's storage is unavailable" in info.value.message
        assert "Connection refused" in info.value.message
        job = d.store.get_job(queued.job_id)
        assert (job.status, job.worker, job.error) == ("running", "test:1", None)
        assert d.store.list_events(model=MODEL, type="retune_failed") == []
        [left] = _messages(caplog, logging.ERROR)
        assert "queued again when this worker's exit is reaped" in left
    finally:
        d.close()
