"""A worker the launcher started that is still running once its job ended: another worker
(``tunewatch worker --job N`` on another host) joined the study and finished the job while
this one hung in a trial or in I/O. The launcher only reaped workers that had exited and
only queued again stale jobs still running, and the hung worker counted against
``workers``: with ``workers: 1`` no queued job ever started again.

Workers here are small Python processes standing in for ``tunewatch worker --job N``; a
hung one ignores SIGTERM from birth (its disposition inherited from the test), so only
SIGKILL ends it."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunewatch._launcher import JobLauncher, worker_id
from tunewatch.store import JobRow, Store

#: A worker that does nothing until a signal ends it.
IDLE_WORKER = [sys.executable, "-c", "import signal; signal.pause()"]
STOP_TIMEOUT_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def launcher(store: Store, tmp_path: Path, clock: FakeClock) -> Iterator[JobLauncher]:
    launcher = JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=1,
        stale_after_s=60.0,
        command=IDLE_WORKER,
        stop_timeout_s=STOP_TIMEOUT_S,
        clock=clock,
    )
    try:
        yield launcher
    finally:
        procs = list(launcher._procs.values())
        launcher.stop()
        for proc in procs:  # one that ignores SIGTERM is killed by `stop()`, or here
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _start(
    launcher: JobLauncher, store: Store, *, hung: bool
) -> tuple[JobRow, subprocess.Popen[bytes]]:
    """Job 1, its worker started by the launcher and claimed by it, then joined by a worker
    on another host; a hung worker ignores SIGTERM."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if hung else None
    try:
        assert launcher.tick() == [job.id]
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    proc = launcher._procs[job.id]
    store.claim_job(job.id, worker_id(proc.pid))
    store.claim_job(job.id, "elsewhere:1")
    return job, proc


def _finish_elsewhere(store: Store, job: JobRow) -> None:
    store.finish_job(
        job.id, status="succeeded", result={"version": 2, "study": "s"}, worker="elsewhere:1"
    )


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tunewatch._launcher" and r.levelno >= logging.WARNING
    ]


def test_a_hung_worker_whose_job_another_worker_finished_is_killed_and_frees_its_slot(
    store: Store, launcher: JobLauncher, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop timeout from when the launcher first sees the job ended (a worker may be
    finishing its work then), SIGTERM, the stop timeout again, then SIGKILL: the slot is
    free and the queued job gets its worker in the same tick."""
    caplog.set_level(logging.INFO, logger="tunewatch._launcher")
    first, hung = _start(launcher, store, hung=True)
    _finish_elsewhere(store, first)
    second, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})

    assert launcher.tick() == []  # the job is seen ended now
    clock.now += STOP_TIMEOUT_S - 0.1
    assert launcher.tick() == []
    assert _messages(caplog) == []  # left alone: it may be finishing
    clock.now += 0.1
    assert launcher.tick() == []
    (terminated,) = _messages(caplog)
    assert "SIGTERM" in terminated
    assert f"job={first.id} " in terminated and f"pid {hung.pid}" in terminated
    assert hung.poll() is None  # it ignores SIGTERM
    clock.now += STOP_TIMEOUT_S - 0.1
    assert launcher.tick() == []
    assert hung.poll() is None
    clock.now += 0.1

    assert launcher.tick() == [second.id]
    assert hung.returncode == -signal.SIGKILL
    assert list(launcher._procs) == [second.id]
    killed = _messages(caplog)[-1]
    assert "SIGKILL" in killed
    assert f"job={first.id} " in killed and f"pid {hung.pid}" in killed
    job = store.get_job(first.id)  # the job is left as the other worker finished it
    assert (job.status, job.worker, job.result) == (
        "succeeded",
        "elsewhere:1",
        {"version": 2, "study": "s"},
    )
    assert store.get_job(second.id).status == "queued"  # its worker claims it


def test_a_worker_that_ends_at_sigterm_is_reaped_and_frees_its_slot(
    store: Store, launcher: JobLauncher, clock: FakeClock
) -> None:
    first, proc = _start(launcher, store, hung=False)
    _finish_elsewhere(store, first)
    second, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    assert launcher.tick() == []
    clock.now += STOP_TIMEOUT_S
    assert launcher.tick() == []  # SIGTERM
    assert proc.wait(10) == -signal.SIGTERM
    assert launcher.tick() == [second.id]  # reaped as it exited: not killed
    assert list(launcher._procs) == [second.id]


def test_a_worker_whose_job_is_still_running_is_not_signalled(
    store: Store, launcher: JobLauncher, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A job another worker joined and still runs keeps this host's worker, however long
    (its heartbeats are the stale check's business)."""
    first, proc = _start(launcher, store, hung=False)
    second, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    for _ in range(3):
        assert launcher.tick() == []
        clock.now += 10 * STOP_TIMEOUT_S
    assert proc.poll() is None
    assert list(launcher._procs) == [first.id]
    assert store.get_job(second.id).status == "queued"
    assert _messages(caplog) == []
