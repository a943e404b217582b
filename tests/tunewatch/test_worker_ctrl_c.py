"""Ctrl-C in a tuning worker (`tunewatch worker --job N`, `tunewatch retune --run`) queues
its job again and ends as every command does: `tunewatch: interrupted`, exit 130. It
said only "job N interrupted: queued again for the next worker"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._example import ExampleModel

CLI = [sys.executable, "-m", "tunewatch"]


def _default_sigint() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored; a
    # terminal's Ctrl-C reaches a process that handles it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _opening(child: subprocess.Popen[str], *, main_thread: bool = True) -> bool:
    """Whether ``child`` (its main thread, else any of its threads) waits in open() of a
    FIFO for a partner: its kernel wait channel says so once the interpreter reached it."""
    tasks = [Path(f"/proc/{child.pid}")]
    if not main_thread:
        tasks = list(Path(f"/proc/{child.pid}/task").glob("*"))
    for task in tasks:
        try:
            if (task / "wchan").read_text() == "wait_for_partner":  # fifo_open
                return True
        except (FileNotFoundError, ProcessLookupError):  # the thread (or the process)
            continue  # ended meanwhile: gone from /proc, or listed and then ESRCH on read
    return False


def _await_opening(child: subprocess.Popen[str], fifo: Path) -> None:
    """Block (on the worker's own progress, not a timer) until its main thread waits to
    open ``fifo``, failing with its stderr should it end first."""
    while not _opening(child):
        if child.poll() is not None:
            _, err = child.communicate()
            raise AssertionError(f"the worker exited before opening {fifo}: {err}")
        os.sched_yield()


def _serve_empty_until_exit(child: subprocess.Popen[str], fifo: Path) -> str:
    """Let each later open of ``fifo`` read an empty study journal (the worker, stopping,
    reports the study's progress once more) until ``child`` exits; its stderr."""
    guard = time.monotonic() + 60  # against a hang only, no assertion on timing
    while child.poll() is None and time.monotonic() < guard:
        if _opening(child, main_thread=False):
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))  # a writer, gone at once
        else:
            os.sched_yield()
    _, err = child.communicate(timeout=10)
    return err


def test_ctrl_c_in_a_worker_queues_its_job_again_and_says_interrupted(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    journal = tmp_path / "study.journal"
    os.mkfifo(journal, 0o600)
    raw = _config(tmp_path)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job_id = outcome.job_id
        settings = d.config.model_dump(mode="json")
        # the job's study on a journal file that is a FIFO: the worker, having claimed
        # the job, waits opening its study for a writer that never comes, where Ctrl-C
        # reaches it
        settings["tuning"]["storage_url"] = str(journal)
        config = tmp_path / "worker.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        child = subprocess.Popen(
            [*CLI, "--config", str(config), "worker", "--job", str(job_id)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        try:
            _await_opening(child, journal)
            assert d.store.get_job(job_id).status == "running"  # claimed, in the job
            child.send_signal(signal.SIGINT)
            err = _serve_empty_until_exit(child, journal)
        finally:
            child.kill()
            child.communicate()
        assert child.returncode == 130, err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-2:] == [
            f"job {job_id} interrupted: queued again for the next worker",
            "tunewatch: interrupted",
        ], err
        assert err.count("tunewatch: interrupted") == 1
        assert d.store.get_job(job_id).status == "queued"
    finally:
        d.close()
