"""How a re-tuning job's end reaches the daemon's log: one line per finished job, grep-able
by ``job=N model=M``.

A job that succeeded (v3 registered) left only "retune taken (job 1)" and "started a worker
for job 1" in the daemon's log: the worker's own lines went to a temporary file, dropped
when it exited 0. A job cancelled through the API left nothing. A job whose worker failed
it was a warning with the worker's stderr pasted in, one that crashed an error with it.

The workers are small Python processes standing in for ``tunewatch worker --job N``: each
claims its job the way a worker does (running, under ``host:pid``) with the standard
library's sqlite3, ends it as told (succeeded, failed, cancelled meanwhile, or killed),
and exits."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.stand_in_workers import StandIns
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch._launcher import MAX_CRASHES, JobLauncher
from tunewatch.store import Store

#: argv: the database file, how the job ends (``succeeded``, ``failed``, ``cancelled``:
#: by an operator while it ran, ``killed``: SIGKILL, as the OOM killer does), the job id
#: (appended by the launcher).
WORKER = [
    sys.executable,
    "-c",
    """
import datetime, json, os, signal, socket, sqlite3, sys
path, how, job = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None)
me = f"{socket.gethostname()}:{os.getpid()}"
db.execute("UPDATE jobs SET status = 'running', worker = ? WHERE id = ?", (me, job))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
print(f"job={job} model=m: tuning starts on {me}", file=sys.stderr, flush=True)
if how == "killed":
    print("MemoryError: Unable to allocate 7.45 GiB for an array", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if how == "succeeded":
    result = json.dumps({"version": 3, "study": f"m-job{job}-abc", "n_trials": 6})
    db.execute(
        "UPDATE jobs SET status = 'succeeded', result = ?, finished_at = ? WHERE id = ?",
        (result, now, job),
    )
    sys.exit(0)
if how == "cancelled":
    db.execute(
        "UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ? WHERE id = ?",
        ("cancelled by alice while running: wrong window", now, job),
    )
    sys.exit(0)
print('Traceback (most recent call last):\\n  File "retune/_export.py", line 88, in refit\\n'
      "KeyError: 'gb_max_depth'", file=sys.stderr, flush=True)
db.execute(
    "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
    ("TuningError: no trial completed\\n(every trial failed)", now, job),
)
sys.exit(1)
""",
]

RunWorker = Callable[[str], tuple[JobLauncher, int, int]]


@pytest.fixture
def run_worker(store: Store, sqlite_url: str, tmp_path: Path) -> Iterator[RunWorker]:
    """Queue a job of model ``m``, start its worker (its job ending ``how``), wait for it
    to exit; ``(launcher, job id, worker pid)``. The worker is not reaped yet; a job
    queued again gets its next worker at the next tick."""
    stand_ins = StandIns(store, tmp_path / "unused.yaml")
    database = sqlite_url.removeprefix("sqlite:///")
    yield lambda how: stand_ins.launch([*WORKER, database, how], retry_after_s=0.0)
    stand_ins.stop()


def _records(caplog: pytest.LogCaptureFixture, job_id: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"job={job_id} ")]


def test_a_reaped_worker_whose_job_succeeded_logs_the_version_it_registered(
    store: Store, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id, pid = run_worker("succeeded")
    launcher.tick()  # reaps it
    assert store.get_job(job_id).status == "succeeded"
    messages = [(r.levelno, r.getMessage()) for r in _records(caplog, job_id)]
    assert messages == [
        (logging.INFO, f"job={job_id} model=m: started a worker (pid {pid})"),
        (
            logging.INFO,
            f"job={job_id} model=m succeeded: version=3 registered (study m-job{job_id}-abc)",
        ),
    ]


def test_a_worker_that_failed_its_job_logs_one_error_line_and_its_stderr_apart(
    store: Store, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """The job failed cleanly (the worker recorded why and exited 1): an error, as a job
    whose worker crashed is, on one line; the worker's stderr in a warning of its own."""
    launcher, job_id, pid = run_worker("failed")
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()
    assert store.get_job(job_id).status == "failed"
    [failed] = [r for r in _records(caplog, job_id) if r.levelno == logging.ERROR]
    assert failed.getMessage() == f"job={job_id} model=m failed: TuningError: no trial completed"
    [stderr] = [r for r in _records(caplog, job_id) if r.levelno == logging.WARNING]
    assert stderr.getMessage().startswith(
        f"job={job_id} model=m: its worker (pid {pid}) exited with status 1; its stderr ends:\n"
    )
    assert "KeyError: 'gb_max_depth'" in stderr.getMessage()


def test_a_job_failed_at_the_crash_limit_logs_one_error_line_and_the_stderr_apart(
    store: Store, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    launcher, job_id, _ = run_worker("killed")
    for _ in range(MAX_CRASHES - 1):
        assert launcher.tick() == [job_id]  # reaps the dead one, queues the job, starts one
        launcher._procs[job_id].wait(30)
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()
    assert store.get_job(job_id).status == "failed"
    # the queued-again warnings of the earlier crashes came first
    failed, stderr = _records(caplog, job_id)[-2:]
    message = failed.getMessage()
    assert failed.levelno == logging.ERROR
    assert message.startswith(f"job={job_id} model=m failed: worker ")
    assert "\n" not in message and "SIGKILL (-9)" in message
    assert f"its workers died {MAX_CRASHES} times: not queued again" in message
    assert stderr.levelno == logging.WARNING
    assert "its stderr ends:\n" in stderr.getMessage()
    assert "MemoryError: Unable to allocate 7.45 GiB" in stderr.getMessage()


def test_a_reaped_worker_of_a_job_cancelled_while_it_ran_says_so(
    store: Store, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher, job_id, pid = run_worker("cancelled")
    launcher.tick()
    assert store.get_job(job_id).status == "cancelled"
    [stopped] = _records(caplog, job_id)[1:]
    assert stopped.levelno == logging.INFO
    assert stopped.getMessage() == (
        f"job={job_id} model=m: its worker (pid {pid}) exited with status 0; the job was cancelled"
    )


def test_a_job_queued_and_cancelled_through_the_api_logs_both_with_its_ids(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d, tokens = make_daemon(
        tmp_path / "data",
        trained,
        extra={
            "scheduler": {"enabled": False},  # no launcher: the job stays queued
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
                }
            ],
        },
    )
    caplog.set_level(logging.INFO, logger="tunewatch")
    try:
        with BackgroundServer(d.app) as server:
            headers = {"Authorization": f"Bearer {tokens['operator']}"}
            queued = httpx.post(
                f"{server.url}/v1/models/{MODEL}/retune",
                json={"reason": "oops"},
                headers=headers,
                timeout=30,
            )
            assert queued.status_code == 202, queued.text
            job_id = queued.json()["job"]
            done = httpx.post(
                f"{server.url}/v1/jobs/{job_id}/cancel",
                json={"reason": "queued by mistake"},
                headers=headers,
                timeout=30,
            )
            assert done.status_code == 200, done.text
    finally:
        d.close()
    messages = [(r.levelno, r.getMessage()) for r in _records(caplog, job_id)]
    assert messages == [
        (
            logging.INFO,
            f"job={job_id} model={MODEL} event=manual -> retune taken: queued job {job_id} "
            "for manual",
        ),
        (
            logging.INFO,
            f"job={job_id} model={MODEL} cancelled by 'test-operator': 'queued by mistake'",
        ),
    ]
