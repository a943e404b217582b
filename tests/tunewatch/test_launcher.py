"""The job launcher's worker processes: started for queued jobs, stopped with the daemon.

Workers here are small Python processes standing in for `tunewatch worker --job N` (the
launcher appends the job id to its command line), so no tuning runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunewatch._launcher import JobLauncher
from tunewatch.store import Store

#: A worker that does nothing for two minutes (ends at SIGTERM).
IDLE_WORKER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store.open(sqlite_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


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
