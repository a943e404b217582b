"""A worker that exits while the store is unavailable (a PostgreSQL restart, which also
ended the worker): the launcher logs its exit status and the end of its stderr at once,
and settles its job when the store answers again. The reap read and closed the worker's
stderr, then failed looking the job up: the exit status and the stderr were lost, only
"could not check on the worker of job N" and the store's traceback logged, and the job
waited for its heartbeats to be missed.

The worker is a small Python process standing in for ``tunewatch worker --job N``: it
claims its job as a worker does (running, under ``host:pid``), straight on PostgreSQL,
then dies as the OOM killer ends one."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.tunewatch.tcp_proxy import TcpProxy
from tunewatch._launcher import JobLauncher, worker_id
from tunewatch.store import Store

pytestmark = pytest.mark.postgres

#: argv: libpq's connection string, the job id (appended by the launcher).
WORKER = [
    sys.executable,
    "-c",
    """
import os, signal, socket, sys
import psycopg
conninfo, job = sys.argv[1], int(sys.argv[2])
me = f"{socket.gethostname()}:{os.getpid()}"
with psycopg.connect(conninfo, autocommit=True) as db:
    db.execute("UPDATE jobs SET status = 'running', worker = %s WHERE id = %s", (me, job))
for i in range(30):
    print(f"[I] trial {i} finished", file=sys.stderr)
print("MemoryError: Unable to allocate 7.45 GiB for an array", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
""",
]


@pytest.fixture
def proxied(pg_url: str, tmp_path: Path) -> Iterator[tuple[Store, JobLauncher, list[TcpProxy]]]:
    """A store on PostgreSQL reached through a proxy (the list's last: one opened again on
    the same port is the database back) and a launcher of :data:`WORKER` on it."""
    url = make_url(pg_url)
    proxies = [TcpProxy((url.host or "127.0.0.1", url.port or 5432))]
    store = Store.open(url.set(port=proxies[0].port).render_as_string(hide_password=False))
    conninfo = (
        f"host={url.host} port={url.port or 5432} user={url.username} "
        f"dbname={url.database} options={url.query['options']}"
    )
    launcher = JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=1,
        stale_after_s=3600.0,  # only the reap can queue the job again within the test
        command=[*WORKER, conninfo],
    )
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        yield store, launcher, proxies
    finally:
        launcher.stop()
        proxies[-1].close()
        store.close()


def test_a_worker_exiting_during_a_store_outage_has_its_exit_and_stderr_logged(
    proxied: tuple[Store, JobLauncher, list[TcpProxy]], caplog: pytest.LogCaptureFixture
) -> None:
    store, launcher, proxies = proxied
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    assert launcher.tick() == [job.id]
    proc = launcher._procs[job.id]
    proc.wait(30)
    caplog.set_level(logging.DEBUG, logger="tunewatch._launcher")
    proxies[-1].close()  # the outage
    launcher.reap_exited()
    launcher.reap_exited()  # the store still down: said once
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "tunewatch._launcher" and r.levelno >= logging.WARNING
    ]
    [exited] = [m for m in logged if f"pid {proc.pid}" in m]
    assert f"job {job.id}" in exited and "SIGKILL (-9): killed, e.g. out of memory" in exited
    assert "MemoryError: Unable to allocate 7.45 GiB" in exited and "trial 29" in exited
    assert "database unavailable" in exited  # why its job waits
    # the store back: the job the worker died holding is queued again, as at any crash
    proxies.append(TcpProxy(proxies[-1].target, port=proxies[-1].port))
    launcher.reap_exited()
    again = store.get_job(job.id)
    assert (again.status, again.worker, again.crashes) == ("queued", None, 1)
    assert again.error is not None and f"worker {worker_id(proc.pid)!r}" in again.error
    assert "SIGKILL (-9)" in again.error and "MemoryError" in again.error
    [event] = store.list_events(model="m", type="retune_interrupted")
    assert event.payload == {"job": job.id, "error": again.error}
