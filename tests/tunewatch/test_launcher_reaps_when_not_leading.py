"""A launcher reaps its workers whether or not its process leads the scheduler.

The leader's tick (`launch_jobs`) reaped them: a process that lost the lease had the task
removed, and a worker of its that exited then stayed a zombie, its stderr file open,
until the process led again or stopped; a worker that died holding its job left it
running until the new leader found its heartbeats missed (six of them).

Workers here are small Python processes standing in for `tunewatch worker --job N`: each
claims its job as a worker does (running, under ``host:pid``) with the standard
library's sqlite3, then dies or exits as told."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunewatch._launcher import JobLauncher, worker_id
from tunewatch.store import Store

#: argv: the database file, how to end (``oom``: claim the job, write to stderr and be
#: killed; ``exit``: exit 2 at once, before claiming it), the job id (appended).
WORKER = [
    sys.executable,
    "-c",
    """
import os, signal, socket, sqlite3, sys
path, how, job = sys.argv[1], sys.argv[2], int(sys.argv[3])
if how == "exit":
    print("tunewatch: error: no store at /nowhere", file=sys.stderr, flush=True)
    sys.exit(2)
db = sqlite3.connect(path, isolation_level=None)
me = f"{socket.gethostname()}:{os.getpid()}"
db.execute("UPDATE jobs SET status = 'running', worker = ? WHERE id = ?", (me, job))
print("MemoryError: Unable to allocate 7.45 GiB for an array", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
""",
]
#: How long a test waits for what should happen at once before it fails.
SAFETY_NET_S = 30.0


class _Awaited(logging.Handler):
    """Sets ``seen`` at the first record of the launcher's logger holding ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def awaited() -> Iterator[list[_Awaited]]:
    handlers: list[_Awaited] = []
    yield handlers
    for handler in handlers:
        logging.getLogger("tunewatch._launcher").removeHandler(handler)


def _await(handlers: list[_Awaited], text: str) -> _Awaited:
    handler = _Awaited(text)
    handlers.append(handler)
    logging.getLogger("tunewatch._launcher").addHandler(handler)
    return handler


def _launcher(store: Store, sqlite_url: str, tmp_path: Path, how: str, **kw: Any) -> JobLauncher:
    return JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=1,
        stale_after_s=3600.0,  # no heartbeat timeout within the test: only a reap acts
        command=[*WORKER, sqlite_url.removeprefix("sqlite:///"), how],
        **kw,
    )


def test_a_worker_that_dies_after_the_leader_tick_stopped_is_reaped_and_its_job_queued_again(
    store: Store, sqlite_url: str, tmp_path: Path, awaited: list[_Awaited]
) -> None:
    """The process led, started the worker, then lost the lease: no tick runs any more.
    The worker, killed holding its job, is still reaped (its exit status collected, no
    zombie), its stderr file closed, and its job queued again with its crash as the
    tick would have, not once another leader finds six heartbeats missed. The reap
    starts no worker, though a job is queued and the slot is free."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    other, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, sqlite_url, tmp_path, "oom", reap_every_s=0.05)
    queued_again = _await(awaited, f"job={job.id} model=m: queued again")
    try:
        assert launcher.tick() == [job.id]  # the last tick this process runs as leader
        proc, stderr = launcher._procs[job.id], launcher._stderr[job.id]
        assert queued_again.seen.wait(SAFETY_NET_S), "the dead worker was never reaped"
        assert launcher.reap_exited() == []  # after the reap in progress: nothing left
        assert proc.returncode == -signal.SIGKILL
        assert stderr.closed
        assert launcher._procs == {} and launcher._stderr == {}
        row = store.get_job(job.id)
        assert (row.status, row.worker, row.crashes) == ("queued", None, 1)
        assert row.error is not None and f"worker {worker_id(proc.pid)!r}" in row.error
        assert "SIGKILL (-9)" in row.error and "MemoryError" in row.error
        [event] = store.list_events(model="m", type="retune_interrupted")
        assert event.payload == {"job": job.id, "error": row.error}
        waiting = store.get_job(other.id)
        assert (waiting.status, waiting.worker) == ("queued", None)
    finally:
        launcher.stop()


def test_reap_exited_records_a_failed_start_as_the_tick_would_and_starts_nothing(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    """Called directly, the reap counts a worker that exited before claiming its job as
    a failed start (the job waits ``retry_after_s`` for its next worker), closes its
    stderr file and returns the job; the job stays queued with no worker started."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    # the launcher's own thread reaps nothing within the test: only the call does
    launcher = _launcher(store, sqlite_url, tmp_path, "exit", reap_every_s=3600.0)
    try:
        assert launcher.tick() == [job.id]
        proc, stderr = launcher._procs[job.id], launcher._stderr[job.id]
        assert proc.wait(SAFETY_NET_S) == 2
        assert launcher.reap_exited() == [job.id]
        assert stderr.closed
        assert launcher._procs == {} and launcher._stderr == {}
        assert launcher.failed_start(job.id) == "status 2: tunewatch: error: no store at /nowhere"
        assert launcher._failed_starts == {job.id: 1}
        assert job.id in launcher._not_before
        assert store.get_job(job.id).status == "queued"
        assert launcher.reap_exited() == []
    finally:
        launcher.stop()


def test_the_reaping_thread_ends_when_the_launcher_stops(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, sqlite_url, tmp_path, "exit")
    assert launcher._reaper is None  # no worker, nothing to reap
    try:
        launcher.tick()
        reaper = launcher._reaper
    finally:
        launcher.stop()
    assert reaper is not None and reaper.name == "tunewatch-reaper"  # with the first worker
    reaper.join(SAFETY_NET_S)
    assert not reaper.is_alive()
