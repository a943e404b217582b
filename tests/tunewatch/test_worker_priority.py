"""A tuning worker lowers its own CPU priority to ``tuning.worker_nice`` when it starts.

Workers ran at the daemon's priority: on one host (the daemon and ``tuning.workers``
worker processes on the same cores) a retune's trials took the cores from scoring
(``bench/results/worker_priority.json``: p50 0.69 ms without workers, 3.12 ms beside two at
nice 0, 0.72 ms at 19). The
worker applies it itself, so one started by hand (``tunewatch worker --job``) on another
machine honours it too; it only ever lowers its priority (raising it needs privileges).

Each thread has a niceness of its own on Linux, and numpy's BLAS pool is started at
import, before the worker reads its configuration: every thread is read here."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._launcher import worker_id

CONFIGURED = 7


def _daemon_with_a_running_job(tmp_path: Path, trained: list[ExampleModel]) -> tuple[Daemon, int]:
    """A daemon whose workers run at ``tuning.worker_nice: 7``, and a queued retune job
    with a budget that keeps its worker tuning until it is stopped."""
    raw = _config(tmp_path, max_trials=10_000, wall_time_s=600)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 1, "worker_nice": CONFIGURED}
    d = _daemon(raw, trained)
    job_id = d.dispatcher.handle(MODEL, "manual", {}).job_id
    assert job_id is not None
    return d, job_id


def _started_worker(d: Daemon, job_id: int) -> subprocess.Popen[bytes]:
    """The launcher's worker for ``job_id``, once it has claimed the job (it lowers its
    priority before it opens the store)."""
    assert d.launcher.tick() == [job_id]
    proc = d.launcher._procs[job_id]
    deadline = time.monotonic() + 120
    while d.store.get_job(job_id).worker != worker_id(proc.pid):
        assert proc.poll() is None, f"the worker exited with status {proc.returncode}"
        assert time.monotonic() < deadline, "the worker did not claim its job"
        time.sleep(0.05)
    return proc


def _niceness_by_thread(pid: int) -> dict[int, int]:
    seen = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            seen[tid] = os.getpriority(os.PRIO_PROCESS, tid)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
    return seen


@pytest.mark.slow
def test_a_launched_worker_runs_every_thread_at_the_configured_niceness(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    here = os.getpriority(os.PRIO_PROCESS, 0)
    assert here < CONFIGURED, f"this test process already runs at niceness {here}"
    d, job_id = _daemon_with_a_running_job(tmp_path, trained)
    try:
        proc = _started_worker(d, job_id)
        threads = _niceness_by_thread(proc.pid)
        assert threads[proc.pid] == CONFIGURED
        assert len(threads) > 1  # BLAS's pool at least, started before the config was read
        assert set(threads.values()) == {CONFIGURED}, threads
    finally:
        d.launcher.stop()
        d.close()


@pytest.mark.slow
def test_a_worker_started_at_a_lower_priority_than_configured_keeps_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Only ever lowered: a worker started under ``nice -n 15`` is not raised to 7 (which
    an unprivileged process may not do anyway)."""
    started_at = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 15)
    d, job_id = _daemon_with_a_running_job(tmp_path, trained)
    try:
        d.launcher.command = ["nice", "-n", "15", *d.launcher.command]
        proc = _started_worker(d, job_id)
        threads = _niceness_by_thread(proc.pid)
        assert threads[proc.pid] == started_at
        assert set(threads.values()) == {started_at}, threads
    finally:
        d.launcher.stop()
        d.close()
