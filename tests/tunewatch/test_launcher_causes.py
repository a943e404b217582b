"""Why a worker that had claimed its job ended: the launcher, which reaps it, reads its exit
status and its stderr (the worker's whole log) instead of deleting them.

The workers are small Python processes standing in for `tunewatch worker --job N`: each
claims its job the way a worker does (running, under ``host:pid``) with the standard
library's sqlite3, so that it starts in milliseconds, then dies as told."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tunewatch._launcher import JobLauncher, describe_exit, worker_id
from tunewatch.store import Store

#: argv: the database file, how to die, the job id (appended by the launcher).
WORKER = [
    sys.executable,
    "-c",
    """
import datetime, json, os, signal, socket, sqlite3, sys
path, how, job = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None)
me = f"{socket.gethostname()}:{os.getpid()}"
db.execute("UPDATE jobs SET status = 'running', worker = ? WHERE id = ?", (me, job))
if how == "oom":
    print("MemoryError: Unable to allocate 7.45 GiB for an array", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
for i in range(40):
    print(f"[I] trial {i} finished", file=sys.stderr)
print('Traceback (most recent call last):\\n  File "retune/_export.py", line 88, in refit\\n'
      "KeyError: 'gb_max_depth'", file=sys.stderr, flush=True)
error = "KeyError: 'gb_max_depth'"
db.execute("UPDATE jobs SET status = 'failed', error = ? WHERE id = ?", (error, job))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
db.execute(  # and announces it, as a worker crashing in Python does
    "INSERT INTO events (model, type, payload, created_at) VALUES ('m', 'retune_failed', ?, ?)",
    (json.dumps({"job": job, "error": error}), now),
)
sys.exit(1)
""",
]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store.open(sqlite_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def run_worker(
    store: Store, sqlite_url: str, tmp_path: Path
) -> Iterator[Callable[[str], tuple[JobLauncher, int, int]]]:
    """Queue a job, start its worker (dying ``how``), wait for it to end; ``(launcher,
    job id, worker pid)``. The worker is not reaped yet."""
    launchers: list[JobLauncher] = []

    def run(how: str) -> tuple[JobLauncher, int, int]:
        job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
        launcher = JobLauncher(
            store=store,
            config_path=tmp_path / "unused.yaml",
            workers=1,
            stale_after_s=3600.0,  # only the reap can fail the job within the test
            command=[*WORKER, sqlite_url.removeprefix("sqlite:///"), how],
        )
        launchers.append(launcher)
        assert launcher.tick() == [job.id]
        proc = launcher._procs[job.id]
        proc.wait(30)
        return launcher, job.id, proc.pid

    yield run
    for launcher in launchers:
        launcher.stop()


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_a_worker_killed_after_claiming_its_job_fails_it_at_once_with_the_signal_and_stderr(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker the OOM killer ended had its job left `running` for six heartbeats, then
    failed as "stopped heartbeating; presumed dead": the launcher had reaped it, knew its
    exit status, and had deleted its stderr unread."""
    launcher, job_id, pid = run_worker("oom")
    assert store.get_job(job_id).status == "running"
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()  # reaps it
    job = store.get_job(job_id)
    assert job.status == "failed" and job.error is not None
    assert f"worker {worker_id(pid)!r}" in job.error
    assert "SIGKILL (-9): killed, e.g. out of memory" in job.error
    assert "MemoryError: Unable to allocate 7.45 GiB" in job.error
    assert "heartbeat" not in job.error
    [event] = store.list_events(model="m", type="retune_failed")
    assert event.payload == {"job": job_id, "error": job.error}
    [logged] = [m for m in _messages(caplog, logging.ERROR) if f"job={job_id}" in m]
    assert "SIGKILL (-9)" in logged and "MemoryError" in logged


def test_a_worker_that_crashed_after_claiming_has_its_traceback_logged(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker crashing in Python logs its traceback to stderr, fails its job with one
    line, announces it (`retune_failed`) and exits 1: the traceback ended up nowhere. The
    job keeps the worker's own end and announcement; the log gets the end of its stderr,
    at most 20 lines."""
    launcher, job_id, _ = run_worker("crash")
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()
    job = store.get_job(job_id)
    assert (job.status, job.error) == ("failed", "KeyError: 'gb_max_depth'")
    [event] = store.list_events(model="m", type="retune_failed")  # the worker's, not a second
    assert event.payload == {"job": job_id, "error": job.error}
    [logged] = [m for m in _messages(caplog, logging.WARNING) if f"job={job_id}" in m]
    assert "exited with status 1" in logged
    assert "Traceback (most recent call last)" in logged and "KeyError: 'gb_max_depth'" in logged
    assert "[I] trial 39 finished" in logged and "[I] trial 20 finished" not in logged
    assert len(logged.splitlines()) <= 21  # the message's own line and 20 of stderr


def test_a_dead_worker_leaves_alone_a_job_another_worker_claimed_since(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Workers share a study: when another worker claimed the job after this one, the job
    is that worker's, alive or not (its heartbeats tell), and only the death is logged."""
    launcher, job_id, _ = run_worker("oom")
    store.claim_job(job_id, "elsewhere:1")
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()
    job = store.get_job(job_id)
    assert (job.status, job.worker, job.error) == ("running", "elsewhere:1", None)
    assert store.list_events(model="m", type="retune_failed") == []
    [logged] = [m for m in _messages(caplog, logging.WARNING) if f"job={job_id}" in m]
    assert "SIGKILL (-9)" in logged and "MemoryError" in logged


def test_an_exit_status_is_described_with_its_signal_name() -> None:
    assert describe_exit(-signal.SIGKILL) == "SIGKILL (-9): killed, e.g. out of memory"
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV (-11)"
    assert describe_exit(3) == "status 3"
    assert describe_exit(-200) == "signal 200 (-200)"
