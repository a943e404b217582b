"""What a reaped worker's job keeps of its stderr: the job's ``error`` is shown to any
caller (``GET /v1/jobs/{id}``, a viewer's; the ``retune_*`` events), so it holds no
database endpoint (host, port, user) nor the data directory's paths. A worker that ended
on a store outage (its database down, its artefact directory read-only) has the fixed
reason the HTTP API gives; the daemon's log gets its stderr's end whole, at warning.

The workers are small Python processes standing in for ``tunewatch worker --job N``:
each claims its job the way a worker does (running, under ``host:pid``) with the
standard library's sqlite3, or not, then writes the stderr it is given and exits."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tunewatch
from tests.tunewatch.stand_in_workers import StandIns
from tunewatch._launcher import MAX_LAUNCHES, JobLauncher
from tunewatch.store import Store

#: argv: the database file, ``claim`` or ``no-claim``, a file holding the stderr to write,
#: the exit status, the job id (appended by the launcher).
WORKER = [
    sys.executable,
    "-c",
    """
import os, socket, sqlite3, sys
path, claim, text, status, job = sys.argv[1:6]
if claim == "claim":
    db = sqlite3.connect(path, isolation_level=None)
    me = f"{socket.gethostname()}:{os.getpid()}"
    db.execute("UPDATE jobs SET status = 'running', worker = ? WHERE id = ?", (me, int(job)))
sys.stderr.write(open(text, encoding="utf-8").read())
sys.stderr.flush()
sys.exit(int(status))
""",
]

HOST, PORT, USER = "10.77.0.9", "5433", "tw_owner"
DRIVER = (
    f'connection failed: connection to server at "{HOST}", port {PORT} failed: '
    f'FATAL:  password authentication failed for user "{USER}"'
)

RunWorker = Callable[..., tuple[JobLauncher, int]]


@pytest.fixture
def run_worker(store: Store, sqlite_url: str, tmp_path: Path) -> Iterator[RunWorker]:
    """Queue a job and start its worker, which writes ``stderr`` and exits with
    ``status`` (after claiming the job, with ``claim``); wait for it to end. ``(launcher,
    job id)``; the worker is not reaped yet. The launcher's configuration is in
    ``tmp_path``, the data directory, as the daemon writes it in its own; a failed start
    is retried at the next tick."""
    stand_ins = StandIns(store, tmp_path / "worker-config.1234.0badf00d.yaml")
    text = tmp_path / "stderr.txt"
    database = sqlite_url.removeprefix("sqlite:///")

    def run(stderr: str, *, status: int = 2, claim: bool = True) -> tuple[JobLauncher, int]:
        text.write_text(stderr, encoding="utf-8")
        how = "claim" if claim else "no-claim"
        command = [*WORKER, database, how, str(text), str(status)]
        launcher, job_id, _ = stand_ins.launch(command, retry_after_s=0.0)
        return launcher, job_id

    yield run
    stand_ins.stop()


def _logged(caplog: pytest.LogCaptureFixture, job_id: int) -> str:
    return "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.name == "tunewatch._launcher"
        and r.levelno >= logging.WARNING
        and f"job={job_id}" in r.getMessage()
    )


def _assert_nothing_named(error: str | None, data_dir: Path) -> None:
    assert error is not None
    # the port as the driver, a URL and a connection string name it (a worker's pid may
    # hold its digits)
    for named in (HOST, USER, str(data_dir), f"port {PORT}", f":{PORT}", f"port={PORT}"):
        assert named not in error, f"{named!r} in the job's error: {error!r}"


def test_a_worker_ended_by_a_database_outage_leaves_the_fixed_reason(
    store: Store, run_worker: RunWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stopped while the job ran: its worker logged the driver's text (host,
    port, user), as did its last line, and the job queued again showed it to a viewer."""
    stderr = (
        f"2026-12-06T22:49:59.560Z INFO tunewatch._artefacts: artefact {'ab' * 32} cached "
        f"again from the store: artefact {'ab' * 32} is missing from {tmp_path}/artefacts\n"
        "job 1 [#####.........................] 1/6 trials  best log_loss 0.6187\r"
        "2026-12-06T22:50:02.124Z WARNING tunewatch.store._engine: store get_job: database "
        f"unavailable: {DRIVER}\n\tIs the server running on that host and accepting TCP/IP "
        "connections?\n"
        "2026-12-06T22:50:03.378Z ERROR tunewatch._tuning: job=1 model=m: the store is "
        f"unavailable (store update_job_progress: database unavailable: {DRIVER}); the job "
        "is left to be queued again when this worker's exit is reaped\n"
        f"tunewatch: error: store update_job_progress: database unavailable: {DRIVER}; Is "
        "the server running on that host and accepting TCP/IP connections?\n"
    )
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id = run_worker(stderr)
    launcher.tick()  # reaps it
    job = store.get_job(job_id)
    assert (job.status, job.crashes) == ("queued", 1)
    _assert_nothing_named(job.error, tmp_path)
    assert job.error is not None and "exited with status 2" in job.error
    assert "the store was unavailable" in job.error and "daemon's log" in job.error
    [event] = store.list_events(model="m", type="retune_interrupted")
    assert event.payload == {"job": job_id, "error": job.error}
    logged = _logged(caplog, job_id)  # the daemon's log has the worker's whole end
    assert f'"{HOST}", port {PORT}' in logged and f"{tmp_path}/artefacts" in logged


def test_a_worker_ended_by_a_read_only_artefact_directory_leaves_no_path(
    store: Store, run_worker: RunWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The artefact directory went read-only during a retune: the job showed its path."""
    digest = "0d" * 32
    write = f"cannot write artefact {digest} under {tmp_path}/artefacts: Read-only file system"
    stderr = (
        f"2026-12-06T22:52:22.286Z WARNING tunewatch._artefacts: {write} (EROFS)\n"
        "2026-12-06T22:52:22.286Z ERROR tunewatch._tuning: job=2 model=m: the store is "
        f"unavailable ({write} (EROFS)); the job is left to be queued again when this "
        "worker's exit is reaped\n"
        f"tunewatch: error: {write} (EROFS)\n"
    )
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id = run_worker(stderr)
    launcher.tick()
    job = store.get_job(job_id)
    assert (job.status, job.crashes) == ("queued", 1)
    _assert_nothing_named(job.error, tmp_path)
    assert job.error is not None and "artefact directory could not be written" in job.error
    assert f"{tmp_path}/artefacts: Read-only file system" in _logged(caplog, job_id)


def test_a_job_whose_workers_cannot_reach_the_database_to_claim_it_fails_without_its_address(
    store: Store, run_worker: RunWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stderr = f"tunewatch: error: store migrate: database unavailable: {DRIVER}\n"
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id = run_worker(stderr, claim=False)
    for _ in range(MAX_LAUNCHES - 1):
        assert launcher.tick() == [job_id]  # reaps the failed start, starts the next one
        launcher._procs[job_id].wait(30)
    launcher.tick()
    job = store.get_job(job_id)
    assert job.status == "failed"
    _assert_nothing_named(job.error, tmp_path)
    assert job.error is not None and f"{MAX_LAUNCHES} times in a row" in job.error
    assert "the store was unavailable" in job.error
    [event] = store.list_events(model="m", type="retune_failed")
    assert event.payload == {"job": job_id, "error": job.error}
    assert f'"{HOST}", port {PORT}' in _logged(caplog, job_id)


def test_another_failure_keeps_its_reason_without_the_endpoint_or_the_data_directory(
    store: Store, run_worker: RunWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash's traceback stays informative (its reason, the install's own files) with
    the database's address, a URL naming it and the data directory's paths taken out."""
    install = Path(tunewatch.__file__).parent / "_tuning.py"
    stderr = (
        f"2026-12-06T22:52:21.542Z WARNING tunewatch._tuning: reading {tmp_path}/reference/"
        f"m-3.npz again; study storage postgresql+psycopg://{USER}:s3cret@{HOST}:{PORT}/tw\n"
        f"libpq: host={HOST} port={PORT} user={USER} dbname=tw\n"
        "Traceback (most recent call last):\n"
        f'  File "{install}", line 88, in _tune\n'
        "tunewatch._errors.TuningError: no trial completed: every trial failed "
        "(KeyError: 'gb_max_depth')\n"
    )
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id = run_worker(stderr, status=1)
    launcher.tick()
    job = store.get_job(job_id)
    assert (job.status, job.crashes) == ("queued", 1)
    _assert_nothing_named(job.error, tmp_path)
    assert job.error is not None and "s3cret" not in job.error
    assert "no trial completed: every trial failed (KeyError: 'gb_max_depth')" in job.error
    assert str(install) in job.error and "exited with status 1" in job.error
    assert f"{tmp_path}/reference/m-3.npz" in _logged(caplog, job_id)
