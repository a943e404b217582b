"""A tuning worker the daemon launched ends when that daemon dies, as at its SIGTERM: after
its running trial, its job queued again for the next daemon's launcher to resume.

Killed with ``kill -9``, the daemon left its worker tuning on, reparented to PID 1, for its
whole wall budget (15 minutes by default): the restarted daemon neither counted it against
``tuning.workers`` nor stopped it, and it registered a version on its own after the
daemon was gone."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.serve_process import free_port, serve_process
from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._example import ExampleModel
from tunewatch._launcher_worker import worker_id
from tunewatch._parent_watch import LAUNCHER_PID_ENV
from tunewatch.store import JobRow, Store

#: Bounds against a hang, not durations: a worker that outlives them outlived its daemon.
EXIT_S = 120.0
#: A study far longer than any test: its worker ends only when it is stopped.
LONG = {"max_trials": 100_000, "wall_time_s": 900}


def _queued_job(tmp_path: Path, trained: list[ExampleModel]) -> tuple[dict[str, object], int, str]:
    """The daemon's configuration (its model on the logistic space, traffic fed), the id
    of a manual retune queued in its store, whose study is :data:`LONG`, and the
    configuration file the daemon wrote for its workers (removed as it closed)."""
    raw = _config(tmp_path, **LONG)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        return raw, outcome.job_id, d.launcher.config_path.read_text()
    finally:
        d.close()


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
    yield store
    store.close()


def _await_tuning(store: Store, job_id: int, serve: subprocess.Popen[str]) -> JobRow:
    """The job once a worker holds it and tunes its study; fails should the daemon end
    first. Polled as the worker gets there (its own progress), not on a timer."""
    while True:
        job = store.get_job(job_id)
        if job.status == "running" and job.progress.get("phase") == "tuning":
            return job
        assert serve.poll() is None, "the daemon exited before its worker tuned"
        os.sched_yield()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_worker_stops_and_queues_its_job_again_when_its_daemon_is_killed(
    trained: list[ExampleModel], tmp_path: Path, jobs: Store
) -> None:
    raw, job_id, _ = _queued_job(tmp_path, trained)
    raw["scheduler"] = {"enabled": True}
    # at the default niceness 19 a worker gets about 1.5 % of a core on a busy host (CI's
    # other tests): how long it then takes to stop says how busy the host is, not whether
    # it stops (tests/tunewatch/test_worker_priority.py checks the niceness)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 10, "worker_nice": 0}
    raw["server"] = {"port": free_port()}
    with serve_process(raw, tmp_path / "tunewatch.yaml") as (serve, log):
        job = _await_tuning(jobs, job_id, serve)
        assert job.worker is not None
        pid = int(job.worker.rsplit(":", 1)[1])
        assert job.worker == worker_id(pid) and _parent_of(pid) == serve.pid, "".join(log)
        worker = os.pidfd_open(pid)  # the worker, whatever reuses its pid once it is gone
        try:
            serve.kill()
            serve.wait()
            ended, _, _ = select.select([worker], [], [], EXIT_S)
            if not ended:
                signal.pidfd_send_signal(worker, signal.SIGKILL)
        finally:
            os.close(worker)
    assert ended, f"the worker (pid {pid}) tuned on after its daemon was killed"
    job = jobs.get_job(job_id)
    # stopped as at SIGTERM: queued again (not left running under a dead worker, to be
    # found stale), for the next daemon's launcher to resume its study
    assert (job.status, job.worker, job.crashes) == ("queued", None, 0)
    assert job.progress.get("study") is not None  # the study it resumes


def test_a_worker_whose_launcher_is_gone_before_it_starts_stops_at_once(
    trained: list[ExampleModel], tmp_path: Path, jobs: Store
) -> None:
    """The daemon died while its worker started (before the worker could ask to be told):
    the worker stops as it would at SIGTERM, its job queued again."""
    _, job_id, written = _queued_job(tmp_path, trained)
    config = tmp_path / "worker.yaml"
    config.write_text(written)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    env[LAUNCHER_PID_ENV] = str(os.getppid())  # a launcher, not this worker's parent
    child = subprocess.Popen(
        [sys.executable, "-m", "tunewatch._cli", "--config", str(config)]
        + ["worker", "--job", str(job_id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _, err = child.communicate(timeout=EXIT_S)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == 0, err
    assert f"the daemon that launched this worker (pid {os.getppid()}) is gone" in err
    assert err.strip().splitlines()[-1] == f"job {job_id} stopped: queued again for the next worker"
    job = jobs.get_job(job_id)
    assert (job.status, job.worker, job.crashes) == ("queued", None, 0)
