"""The job launcher's worker processes: started for queued jobs, stopped with the daemon.

Workers here are small Python processes standing in for `tunewatch worker --job N` (the
launcher appends the job id to its command line), so no tuning runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunewatch._launcher import MAX_LAUNCHES, JobLauncher, worker_id
from tunewatch.store import Store

#: A worker that does nothing for two minutes (ends at SIGTERM).
IDLE_WORKER = [sys.executable, "-c", "import signal; signal.pause()"]  # until a signal ends it
#: A worker deep in a long trial: it does not end at SIGTERM. Given a directory, it makes
#: a file there named after its job once it ignores SIGTERM.
STUBBORN_WORKER = [
    sys.executable,
    "-c",
    "import pathlib, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1], sys.argv[2]).touch(); signal.pause()",
]


def _launcher(store: Store, tmp_path: Path, command: list[str], **kwargs: Any) -> JobLauncher:
    return JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=2,
        stale_after_s=60.0,
        command=command,
        **kwargs,
    )


def test_a_tick_still_running_when_the_launcher_stops_starts_no_worker(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon shuts the scheduler down without waiting, then stops the launcher: a
    tick still reading the queue started a worker after `stop()` had gone through the
    workers, and nothing ever stopped it (an orphan tuning on after the daemon exited)."""
    store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, tmp_path, IDLE_WORKER)
    listing, stopped = threading.Event(), threading.Event()
    list_jobs = store.list_jobs

    def list_jobs_until_stopped(**kwargs: Any) -> Any:
        listing.set()
        stopped.wait(10)
        return list_jobs(**kwargs)

    monkeypatch.setattr(store, "list_jobs", list_jobs_until_stopped)
    started: list[int] = []
    tick = threading.Thread(target=lambda: started.extend(launcher.tick()))
    tick.start()
    assert listing.wait(10)  # the tick is reading the queue
    launcher.stop()
    stopped.set()
    tick.join(10)
    monkeypatch.undo()
    after = launcher.tick()  # the scheduler's next tick, already queued when it shut down
    leftover = list(launcher._procs.values())
    for proc in leftover:  # an orphan would sleep on past the test
        proc.kill()
        proc.wait()
    assert not tick.is_alive()
    assert started == [] and after == []
    assert [proc.pid for proc in leftover] == []


def test_a_worker_killed_at_shutdown_has_its_job_queued_again(store: Store, tmp_path: Path) -> None:
    """A worker still in its trial when the stop timeout ran out was killed and its job
    left `running`: the next leader failed it as stale (its alert episode and cool-down
    slot spent) instead of resuming its study."""
    ready = tmp_path / "ready"
    ready.mkdir()
    ours, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    joined, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, tmp_path, [*STUBBORN_WORKER, str(ready)], stop_timeout_s=0.2)
    assert launcher.tick() == [ours.id, joined.id]
    procs = dict(launcher._procs)
    for job_id, proc in procs.items():  # what a worker does first
        store.claim_job(job_id, worker_id(proc.pid))
    store.claim_job(joined.id, "elsewhere:1")  # another worker joined that study since
    deadline = time.monotonic() + 30
    while len(list(ready.iterdir())) < len(procs):
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    launcher.stop()
    assert [proc.returncode for proc in procs.values()] == [-signal.SIGKILL] * 2
    job = store.get_job(ours.id)
    assert (job.status, job.worker, job.heartbeat_at, job.error) == ("queued", None, None, None)
    assert store.get_job(joined.id).status == "running"  # its other worker goes on
    interrupted = store.list_events(model="m", type="retune_interrupted")
    assert [event.payload["job"] for event in interrupted] == [ours.id]
    assert not store.list_events(model="m", type="retune_failed")
    nxt = _launcher(store, tmp_path, IDLE_WORKER)  # the next leader resumes the study
    try:
        assert nxt.tick() == [ours.id]
    finally:
        nxt.stop()


#: A worker that cannot start: it fails before claiming its job, with a reason on stderr.
BROKEN_WORKER = [
    sys.executable,
    "-c",
    "import sys; sys.stderr.write('Traceback ...\\nImportError: no module named x\\n'); "
    "sys.exit(3)",
]


def _tick_until_the_workers_exit(launcher: JobLauncher) -> list[int]:
    started = launcher.tick()
    deadline = time.monotonic() + 30
    while any(proc.poll() is None for proc in launcher._procs.values()):
        assert time.monotonic() < deadline, "the workers did not exit"
        time.sleep(0.05)
    return started


def test_a_job_whose_worker_fails_before_claiming_it_is_failed_with_the_reason(
    store: Store, tmp_path: Path
) -> None:
    """A worker that died at start (a bad environment, the store unreachable from it) was
    started again every tick, forever, with its stderr thrown away: its job stayed queued,
    held a slot of the quota, and nothing said why."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, tmp_path, BROKEN_WORKER, retry_after_s=0)
    starts = [_tick_until_the_workers_exit(launcher) for _ in range(MAX_LAUNCHES + 2)]
    assert starts[:MAX_LAUNCHES] == [[job.id]] * MAX_LAUNCHES
    assert starts[MAX_LAUNCHES:] == [[], []]
    failed = store.get_job(job.id)
    assert failed.status == "failed" and failed.error is not None
    assert f"exited with 3 before claiming the job, {MAX_LAUNCHES} times" in failed.error
    assert "ImportError: no module named x" in failed.error
    events = store.list_events(model="m", type="retune_failed")
    assert [event.payload["job"] for event in events] == [job.id]


def test_only_failed_starts_in_a_row_count(store: Store, tmp_path: Path) -> None:
    """A worker stopped with the daemon queues its job again and exits 0: the starts
    that failed before it are not held against the job."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = _launcher(store, tmp_path, BROKEN_WORKER, retry_after_s=0)
    for command in (BROKEN_WORKER, [sys.executable, "-c", "pass"], BROKEN_WORKER):
        launcher.command = command
        for _ in range(MAX_LAUNCHES - 1 if command is BROKEN_WORKER else 1):
            assert _tick_until_the_workers_exit(launcher) == [job.id]
    launcher.tick()  # reaps the last one
    assert store.get_job(job.id).status == "queued"
    launcher.stop()


def test_a_failed_start_is_retried_only_after_a_growing_wait(store: Store, tmp_path: Path) -> None:
    """Workers failing during a short outage of the store must not exhaust a job's starts
    tick after tick (the launcher ticks every 2 s): the wait doubles with each failure in
    a row (a constant one passed the test as it was)."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    now = [1000.0]  # the launcher's monotonic clock, in seconds
    launcher = _launcher(store, tmp_path, BROKEN_WORKER, retry_after_s=60, clock=lambda: now[0])
    assert _tick_until_the_workers_exit(launcher) == [job.id]
    assert launcher.tick() == []  # reaped, counted, and waiting 60 s
    now[0] = 1059.9
    assert launcher.tick() == []
    now[0] = 1060.0
    assert _tick_until_the_workers_exit(launcher) == [job.id]
    assert launcher.tick() == []  # the second failure in a row: twice the first wait
    now[0] = 1179.9
    assert launcher.tick() == []
    now[0] = 1180.0
    assert launcher.tick() == [job.id]
    launcher.stop()
    assert store.get_job(job.id).status == "queued"


def test_the_oldest_queued_job_is_started_first_however_many_wait(
    store: Store, tmp_path: Path
) -> None:
    """The launcher read the newest 50 queued jobs: past 50, the oldest waited until the
    queue shrank, however long that took."""
    oldest = [store.create_job(model="m", kind="retune", trigger={}, spec={})[0] for _ in range(55)]
    launcher = _launcher(store, tmp_path, IDLE_WORKER)
    try:
        assert launcher.tick() == [oldest[0].id, oldest[1].id]  # two workers
    finally:
        launcher.stop()


def test_serve_with_workers_but_no_scheduler_says_its_jobs_will_not_start(
    tmp_path: Path,
) -> None:
    """The launcher runs on the scheduler's leader only: with the scheduler off, a retune
    answered "taken" stayed queued for good, filling the quota, and nothing said why."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(
        f"data_dir: {json.dumps(str(tmp_path))}\n"
        "scheduler: {enabled: false}\n"
        "tuning: {workers: 1}\n",
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "tunewatch._cli", "--config", str(config)]
    argv += ["serve", "--host", "127.0.0.1", "--port", "0"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    lines: list[str] = []
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # ends when the daemon exits, should it fail to start
                lines.append(line)
                if "Application startup complete" in line:
                    break
        finally:
            proc.terminate()
            proc.wait(30)
    assert any("Application startup complete" in line for line in lines), "".join(lines)
    warned = [line for line in lines if "scheduler.enabled is false" in line]
    assert len(warned) == 1, "".join(lines)
    assert (
        warned[0]
        .rstrip()
        .endswith(
            "WARNING tunewatch._serve: scheduler.enabled is false: this process starts no "
            "tuning job (tuning.workers: 1 unused); queued jobs start on the scheduler's "
            "leader only"
        )
    )


def test_a_daemon_started_without_a_scheduler_by_its_embedder_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo starts a daemon with the scheduler off and runs its launcher's ticks
    itself: a warning that no tuning job would start told a newcomer something false."""
    from tunewatch._config import build_config
    from tunewatch._daemon import Daemon

    raw = {"data_dir": str(tmp_path), "scheduler": {"enabled": False}, "tuning": {"workers": 1}}
    daemon = Daemon(build_config(raw, env={}), env={})
    with caplog.at_level("WARNING", logger="tunewatch._daemon"):
        daemon.start()
    daemon.close()
    assert [r.getMessage() for r in caplog.records if "scheduler" in r.getMessage()] == []
