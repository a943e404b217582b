"""kill -9 during load loses no acknowledged record — on SQLite and on PostgreSQL.

The kill lands while another connection holds the store's write lock: the daemon's
commits are held up, so a daemon that acknowledged a request before its commit would have
acknowledged records that are still only in memory when it dies. Killed between two
commits, such a daemon usually gets away with it: group commit catches up within
milliseconds."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import yaml
from sqlalchemy import make_url

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import _free_port
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import Store
from tunewatch.store._engine import sqlite_file

N_REQUESTS = 2000
#: How long the store's write lock is held before the kill: long enough for a daemon that
#: acknowledges before committing to acknowledge many requests (hundreds at this load).
LOCK_WINDOW_S = 0.25


def _start(
    config: Path, port: int, log: Path, *, first: str | None = None
) -> subprocess.Popen[bytes]:
    """``tunewatch serve`` in a process of its own, once ready; ``first``, Python source
    the process runs before the CLI, when given."""
    run = ["-m", "tunewatch._cli"]
    if first is not None:
        run = [
            "-c",
            f"{first}\nimport sys\nfrom tunewatch._cli import main\nsys.exit(main())",
        ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                *run,
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass  # not listening yet
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"daemon did not become ready; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _lock_store(store_url: str) -> Any:
    """A connection of its own holding the lock the daemon's commits need, until rolled
    back: on SQLite the write lock (``BEGIN IMMEDIATE``), on PostgreSQL ``LOCK TABLE ... IN
    EXCLUSIVE MODE`` on ``requests`` and ``outputs`` (reads go on, writes wait)."""
    locker: Any
    path = sqlite_file(store_url)
    if path is not None:
        locker = sqlite3.connect(path, timeout=10, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
    else:
        url = make_url(store_url)
        schema = str(url.query["options"]).removeprefix("-csearch_path=")
        locker = psycopg.connect(
            f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
        )
        locker.execute(f'LOCK TABLE "{schema}".requests, "{schema}".outputs IN EXCLUSIVE MODE')
    return locker


def _release(locker: Any) -> None:
    locker.rollback()
    locker.close()


async def _load(
    port: int, token: str, proc: subprocess.Popen[bytes], store_url: str, lock_after: int
) -> tuple[list[str], int]:
    """Send the load; after ``lock_after`` acknowledgements lock the store, kill the daemon
    ``LOCK_WINDOW_S`` later, then release the lock. Returns the acknowledged ids in the
    order they were acknowledged, and how many there were when the lock was taken."""
    x, _ = example_data(N_REQUESTS, seed=3)
    x = np.clip(x, -9, 9)
    acked: list[str] = []
    killer: asyncio.Task[int] | None = None
    sem = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16)

    async def kill_while_locked() -> int:
        locker = await asyncio.to_thread(_lock_store, store_url)
        try:
            acked_when_locked = len(acked)
            await asyncio.sleep(LOCK_WINDOW_S)  # the load goes on; no commit can
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            await asyncio.to_thread(_release, locker)
        return acked_when_locked

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=limits,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:

        async def one(i: int) -> None:
            nonlocal killer
            body = {
                "id": f"k{i}",
                "inputs": [
                    {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": x[i].tolist()}
                ],
            }
            async with sem:
                try:
                    r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
                except httpx.TransportError:
                    return  # the daemon died: this request was never acknowledged
            if r.status_code == 200:
                acked.append(f"k{i}")
                if len(acked) == lock_after:
                    killer = asyncio.create_task(kill_while_locked())

        await asyncio.gather(*(one(i) for i in range(N_REQUESTS)))
    assert killer is not None, f"only {len(acked)} of {N_REQUESTS} requests were acknowledged"
    return acked, await killer


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigkill_during_load_loses_no_acknowledged_record(
    backend: str, tmp_path: Path, trained: list[ExampleModel], request: pytest.FixtureRequest
) -> None:
    store_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    daemon, tokens = make_daemon(tmp_path / "data", trained, store_url=store_url)
    daemon.close()
    config = tmp_path / "tunewatch.yaml"
    raw: dict[str, object] = {"data_dir": str(tmp_path / "data")}
    if store_url:
        raw["store"] = {"url": store_url}
    config.write_text(yaml.safe_dump(raw))
    store_url = store_url or f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"
    port = _free_port()
    log = tmp_path / "daemon.log"
    # The random moment of the kill: when the lock is taken.
    lock_after = int(np.random.default_rng(11).integers(300, 1700))

    proc = _start(config, port, log)
    try:
        acked, acked_when_locked = asyncio.run(
            _load(port, tokens["scorer"], proc, store_url, lock_after)
        )
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert lock_after <= acked_when_locked <= len(acked) < N_REQUESTS

    restarted = _start(config, port, log)  # it must come back on the crashed store
    restarted.terminate()
    restarted.wait(timeout=30)

    store = Store(store_url)
    try:
        recorded = store.request_ids(MODEL)
        missing = set(acked) - recorded
        while_locked = missing & set(acked[acked_when_locked:])
        assert not missing, (
            f"{len(missing)} acknowledged requests lost ({len(while_locked)} of them "
            f"acknowledged while the store's write lock was held), e.g. {sorted(missing)[:5]}"
        )
        champion_outputs = {
            rid for rid in acked if any(o.version == 1 for o in store.get_outputs(MODEL, rid))
        }
        assert champion_outputs == set(acked)
    finally:
        store.close()
