"""What an ordinary `tunewatch serve` run writes to stderr: every line a log record in
tunewatch's format (uvicorn's own lines too), and no warning for a healthy SIGTERM stop.

uvicorn used to install its own handlers (``INFO:     Started server process [11826]``, no
timestamp); and a stop after any request run in anyio's thread pool (a sync route) warned
that the pool's idle worker thread was "still running, abandoned".
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import threading
from collections.abc import Callable
from contextvars import Context
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from tests.e2e.test_crash_durability import _start
from tests.e2e.test_serve_signals import DEADLINE_S, _config, _stop
from tests.tunewatch.conftest import MODEL
from tunewatch._background import _free_port
from tunewatch._example import ExampleModel
from tunewatch._serve import _idle_pool_worker


def _idle(worker: threading.Thread) -> bool:
    return _idle_pool_worker(worker, sys._current_frames().get(worker.ident or 0))


#: A record as tunewatch's CLI formats it: UTC stamp to the millisecond, level, logger.
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")


def _serve_one_request_then_sigterm(tmp_path: Path, trained: list[ExampleModel]) -> str:
    """The log of a serve run: started, one `GET /v1/models` (a sync route: anyio's thread
    pool), stopped by SIGTERM."""
    # the model listed: the store holding one the config does not list is a warning
    config, tokens = _config(
        tmp_path,
        trained,
        scheduler={"enabled": False},
        tuning={"workers": 0},
        models=[{"name": MODEL, "task": "binary"}],
    )
    port, log = _free_port(), tmp_path / "daemon.log"
    proc = _start(config, port, log)
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/models",
            headers={"Authorization": f"Bearer {tokens['viewer']}"},
            timeout=DEADLINE_S,
        )
        assert answer.status_code == 200, answer.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM, log.read_text()[-3000:]
    finally:
        _stop(proc)
    return log.read_text()


def test_healthy_sigterm_stop_after_a_request_logs_no_warning(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    text = _serve_one_request_then_sigterm(tmp_path, trained)
    assert "Application shutdown complete." in text, text[-3000:]
    assert not [line for line in text.splitlines() if " WARNING " in line], text[-3000:]


def test_every_line_of_a_serve_run_is_a_record_in_tunewatchs_format(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    text = _serve_one_request_then_sigterm(tmp_path, trained)
    lines = text.splitlines()
    assert not [line for line in lines if not RECORD.match(line)], text[-3000:]
    # uvicorn's own lines among them, from its start to its end
    for said in ("uvicorn.error: Started server process", "uvicorn.error: Shutting down"):
        assert said in text, text[-3000:]


def _pool_worker_after_the_loop(
    job: Callable[[], object], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> threading.Thread:
    """The anyio pool worker that ran ``job`` (from a task cancelled once the job started,
    the job abandoned), once the event loop has ended: as `serve` finds it at its exit."""
    started = threading.Event()
    ran_in: list[threading.Thread] = []

    def run() -> object:
        ran_in.append(threading.current_thread())
        started.set()
        return job()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(anyio.to_thread.run_sync, run, abandon_on_cancel=True))
            await anyio.to_thread.run_sync(started.wait)
            tg.cancel_scope.cancel()

    anyio.run(main, backend_options={"loop_factory": loop_factory} if loop_factory else None)
    return ran_in[0]


def test_a_pool_worker_in_a_job_at_exit_is_still_running_one_without_is_not() -> None:
    release = threading.Event()
    busy = _pool_worker_after_the_loop(release.wait)
    try:
        assert busy.is_alive()
        assert not _idle_pool_worker(busy, sys._current_frames().get(busy.ident or 0))
    finally:
        release.set()
        busy.join()
    idle = _pool_worker_after_the_loop(lambda: None)
    assert _idle_pool_worker(idle, sys._current_frames().get(idle.ident or 0))
    idle.join()  # its stop command queued: it ends by itself


def test_a_pool_worker_with_a_job_of_c_code_at_exit_is_still_running() -> None:
    held = threading.Lock()
    held.acquire()
    busy = _pool_worker_after_the_loop(held.acquire)  # no Python frame of the job's own
    try:
        assert busy.is_alive()
        assert not _idle(busy)
    finally:
        held.release()
        busy.join()


def test_a_pool_worker_reporting_its_finished_job_at_exit_is_not_still_running() -> None:
    """The job returned as the loop ended and the worker is handing back its result: the
    clean-clone CI caught it in `call_soon_threadsafe` and `serve` called it abandoned."""
    reporting, release = threading.Event(), threading.Event()
    job_ran_in: list[threading.Thread] = []

    class Loop(asyncio.SelectorEventLoop):
        def call_soon_threadsafe(  # type: ignore[override]  # typeshed's is variadic-generic
            self, callback: Callable[..., object], *args: Any, context: Context | None = None
        ) -> asyncio.Handle:
            if threading.current_thread() in job_ran_in:  # the job's worker: held here
                reporting.set()
                release.wait()
            return super().call_soon_threadsafe(callback, *args, context=context)

    worker = _pool_worker_after_the_loop(
        lambda: job_ran_in.append(threading.current_thread()), loop_factory=Loop
    )
    try:
        assert reporting.wait(DEADLINE_S)
        assert worker.is_alive()
        assert _idle(worker)
    finally:
        release.set()
        worker.join()
