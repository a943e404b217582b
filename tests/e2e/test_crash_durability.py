"""kill -9 during load loses no acknowledged record — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import _free_port
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import Store

N_REQUESTS = 2000


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tunewatch._cli",
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


async def _load(port: int, token: str, proc: subprocess.Popen[bytes], kill_after: int) -> set[str]:
    x, _ = example_data(N_REQUESTS, seed=3)
    x = np.clip(x, -9, 9)
    acked: set[str] = set()
    sem = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=limits,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:

        async def one(i: int) -> None:
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
                acked.add(f"k{i}")
                if len(acked) == kill_after:
                    os.kill(proc.pid, signal.SIGKILL)

        await asyncio.gather(*(one(i) for i in range(N_REQUESTS)))
    return acked


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
    port = _free_port()
    log = tmp_path / "daemon.log"
    kill_after = int(np.random.default_rng(11).integers(300, 1700))

    proc = _start(config, port, log)
    try:
        acked = asyncio.run(_load(port, tokens["scorer"], proc, kill_after))
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert kill_after <= len(acked) < N_REQUESTS

    restarted = _start(config, port, log)  # it must come back on the crashed store
    restarted.terminate()
    restarted.wait(timeout=30)

    store = Store(store_url or f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
    try:
        recorded = store.request_ids(MODEL)
        missing = acked - recorded
        assert not missing, f"{len(missing)} acknowledged requests lost, e.g. {sorted(missing)[:5]}"
        champion_outputs = {
            rid for rid in acked if any(o.version == 1 for o in store.get_outputs(MODEL, rid))
        }
        assert champion_outputs == acked
    finally:
        store.close()
