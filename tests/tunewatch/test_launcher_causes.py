"""Why a worker that had claimed its job ended: the launcher, which reaps it, reads its exit
status and its stderr (the worker's whole log) instead of deleting them.

The workers are small Python processes standing in for `tunewatch worker --job N`: each
claims its job the way a worker does (running, under ``host:pid``) with the standard
library's sqlite3, so that it starts in milliseconds, then dies as told."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.tunewatch.stand_in_workers import StandIns
from tunewatch._launcher import MAX_CRASHES, JobLauncher, describe_exit, worker_id
from tunewatch.store import Store

#: argv: the database file, how to die (``oom``, ``oom-joining``: after another worker
#: claimed the job, ``crash``; ``hang``: stop itself, SIGSTOP, once it claimed the job, as
#: a worker hung with no heartbeat), the job id (appended by the launcher).
WORKER = [
    sys.executable,
    "-c",
    """
import datetime, json, os, signal, socket, sqlite3, sys
path, how, job = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None)
me = f"{socket.gethostname()}:{os.getpid()}"
if how == "oom-joining":  # another worker claimed the job first: this one joins its study
    db.execute("UPDATE jobs SET status = 'running', worker = 'cli-host:1' WHERE id = ?", (job,))
db.execute("UPDATE jobs SET status = 'running', worker = ? WHERE id = ?", (me, job))
if how == "hang":
    os.kill(os.getpid(), signal.SIGSTOP)
    sys.exit(0)
if how.startswith("oom"):
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
def run_worker(
    store: Store, sqlite_url: str, tmp_path: Path
) -> Iterator[Callable[[str], tuple[JobLauncher, int, int]]]:
    """Queue a job, start its worker (dying ``how``), wait for it to end; ``(launcher,
    job id, worker pid)``. The worker is not reaped yet."""
    stand_ins = StandIns(store, tmp_path / "unused.yaml")
    database = sqlite_url.removeprefix("sqlite:///")
    yield lambda how: stand_ins.launch([*WORKER, database, how])
    stand_ins.stop()


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_a_worker_killed_after_claiming_its_job_queues_it_again_with_the_signal_and_stderr(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker the OOM killer ended failed its job: the retune was lost with every trial
    its study had completed. The job is queued again at once, for the next worker to
    resume the study, with the worker's exit status and the end of its stderr."""
    launcher, job_id, pid = run_worker("oom")
    assert store.get_job(job_id).status == "running"
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()  # reaps it
    job = store.get_job(job_id)
    assert (job.status, job.worker, job.crashes) == ("queued", None, 1)
    assert job.error is not None and f"worker {worker_id(pid)!r}" in job.error
    assert "SIGKILL (-9): killed, e.g. out of memory" in job.error
    assert "MemoryError: Unable to allocate 7.45 GiB" in job.error
    assert store.list_events(model="m", type="retune_failed") == []
    [event] = store.list_events(model="m", type="retune_interrupted")
    assert event.payload == {"job": job_id, "error": job.error}
    [logged] = [m for m in _messages(caplog, logging.WARNING) if f"job={job_id}" in m]
    assert "queued again" in logged and "SIGKILL (-9)" in logged and "MemoryError" in logged
    assert launcher.tick() == []  # the next worker waits a moment
    launcher.clock = lambda: time.monotonic() + launcher.retry_after_s
    assert launcher.tick() == [job_id]


def test_a_worker_whose_job_was_queued_again_as_stale_is_not_a_failed_start(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another host's launcher (or this one, for a worker that stopped heartbeating
    before it died) queued the job again: its worker had claimed it all the same, so its
    exit counts no failed start, and no start waits on it."""
    launcher, job_id, _ = run_worker("oom")
    store.heartbeat_job(job_id)
    # a cutoff a second ahead: a heartbeat stamped in this same millisecond is stale too
    # (with `older_than=0` it was not, by the database's millisecond clock: a flaky test)
    [again] = store.requeue_stale_jobs(older_than=-timedelta(seconds=1), max_crashes=MAX_CRASHES)
    assert (again.status, again.crashes) == ("queued", 1)
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    assert launcher.tick() == [job_id]  # the next worker, at once
    assert launcher._failed_starts == {}
    assert store.get_job(job_id).crashes == 1  # counted once
    logged = [m for m in _messages(caplog, logging.WARNING) if f"job={job_id}" in m]
    assert not any("before claiming" in m for m in logged)
    assert any("the job is queued" in m and "SIGKILL (-9)" in m for m in logged)


def test_a_job_whose_workers_keep_dying_is_failed_once_at_the_crash_limit(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    launcher, job_id, _ = run_worker("oom")
    launcher.retry_after_s = 0.0  # the next worker at once
    for _ in range(MAX_CRASHES - 1):
        assert launcher.tick() == [job_id]  # reaps the dead one, queues the job, starts one
        launcher._procs[job_id].wait(30)
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    launcher.tick()
    job = store.get_job(job_id)
    assert (job.status, job.crashes) == ("failed", MAX_CRASHES)
    assert job.error is not None and "SIGKILL (-9)" in job.error
    assert f"died {MAX_CRASHES} times: not queued again" in job.error
    [event] = store.list_events(model="m", type="retune_failed")
    assert event.payload == {"job": job_id, "error": job.error}
    assert len(store.list_events(model="m", type="retune_interrupted")) == MAX_CRASHES - 1
    # the failure on one line at error, the stderr's end in a warning after it
    [logged] = [m for m in _messages(caplog, logging.ERROR) if f"job={job_id}" in m]
    assert "SIGKILL (-9)" in logged and "\n" not in logged
    tail = [m for m in _messages(caplog, logging.WARNING) if f"job={job_id}" in m][-1]
    assert "its stderr ends:" in tail and "MemoryError" in tail
    assert launcher.tick() == [] and store.count_active_jobs() == 0


def test_a_worker_dying_after_joining_a_live_worker_s_study_keeps_the_job_active(
    store: Store,
    run_worker: Callable[[str], tuple[JobLauncher, int, int]],
) -> None:
    """A CLI worker claimed the job first and the launcher's worker joined it, so the job
    named the launcher's. When that one died, the job was failed while the first still
    tuned: `retune_failed` announced, its quota slot freed for a second job, and the job
    flipped to succeeded when the first worker registered its version."""
    launcher, job_id, _ = run_worker("oom-joining")
    launcher.tick()
    row = store.get_job(job_id)
    assert (row.status, row.crashes) == ("queued", 1)
    assert store.count_active_jobs() == 1
    assert store.list_events(model="m", type="retune_failed") == []
    store.heartbeat_job(job_id)  # the first worker heartbeats and finishes, as it does
    done = store.finish_job(job_id, status="succeeded", result={"version": 2})
    assert (done.status, done.error) == ("succeeded", None)


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
    [failed] = [m for m in _messages(caplog, logging.ERROR) if f"job={job_id}" in m]
    assert failed == f"job={job_id} model=m failed: KeyError: 'gb_max_depth'"  # one line
    [logged] = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f"job={job_id}" in r.getMessage()
    ]
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


def _wait_until_stopped(pid: int) -> None:
    """Until the worker ``pid`` has claimed its job and stopped itself (it stays unreaped)."""
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"worker {pid} ended instead of stopping: {status:#x}"


def test_a_local_worker_whose_job_went_stale_is_killed_and_its_job_started_again(
    store: Store, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker on the leader's host hung (stopped, or stuck with no heartbeat): its job was
    queued again as stale, but the hung process stayed among the launcher's workers, so
    the job was never started again (a worker for it was "running") and the process held
    one of the quota's slots for good. It is killed and reaped, its crash counted once
    (by the requeue, not again by the reap), and the job's next worker starts."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    now = [1000.0]  # the launcher's monotonic clock, in seconds
    launcher = JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=1,
        stale_after_s=3600.0,
        command=[*WORKER, sqlite_url.removeprefix("sqlite:///"), "hang"],
        clock=lambda: now[0],
    )
    procs = []
    try:
        assert launcher.tick() == [job.id]
        hung = launcher._procs[job.id]
        procs.append(hung)
        _wait_until_stopped(hung.pid)
        assert store.get_job(job.id).worker == worker_id(hung.pid)
        store.heartbeat_job(job.id)  # its last heartbeat
        caplog.set_level(logging.INFO, logger="tunewatch._launcher")
        # a cutoff a second ahead: its claim's heartbeat is stale (no waiting 6 heartbeats)
        launcher.stale_after_s = -1.0
        assert launcher.tick() == []  # its next worker waits `retry_after_s`, as after a crash
        launcher.stale_after_s = 3600.0
        row = store.get_job(job.id)
        assert (row.status, row.worker, row.crashes) == ("queued", None, 1)
        assert row.error is not None and "stopped heartbeating" in row.error
        assert hung.returncode == -signal.SIGKILL  # killed and reaped
        assert launcher._procs == {} and launcher._stderr == {}  # its quota slot is free
        [logged] = [m for m in _messages(caplog, logging.WARNING) if f"pid {hung.pid}" in m]
        assert f"job={job.id}" in logged and "killed" in logged
        now[0] += launcher.retry_after_s
        assert launcher.tick() == [job.id]
        fresh = launcher._procs[job.id]
        procs.append(fresh)
        assert fresh.pid != hung.pid
        _wait_until_stopped(fresh.pid)
        row = store.get_job(job.id)
        assert (row.status, row.worker, row.crashes) == ("running", worker_id(fresh.pid), 1)
        assert launcher._failed_starts == {}  # the killed worker's reap is no failed start
        assert store.list_events(model="m", type="retune_failed") == []
        [event] = store.list_events(model="m", type="retune_interrupted")
        assert event.payload["job"] == job.id
    finally:
        for proc in procs:  # no stopped process outlives the test
            proc.kill()
            proc.wait()
        launcher.stop()


def test_an_exit_status_is_described_with_its_signal_name() -> None:
    assert describe_exit(-signal.SIGKILL) == "SIGKILL (-9): killed, e.g. out of memory"
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV (-11)"
    assert describe_exit(3) == "status 3"
    assert describe_exit(-200) == "signal 200 (-200)"
