"""The group-commit writer lets go of a group once it is committed: its locals kept the
last group (every request's inputs) alive while it waited for the next, 200 MiB after
200 acknowledged 1 MiB requests, until another request came."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import tracemalloc
from datetime import UTC, datetime

import numpy as np

from tunewatch._recorder import Recorder
from tunewatch.store import OutputRecord, RequestRecord, Store

MIB = 2**20


def _large(rid: str) -> RequestRecord:
    rows = np.ones((4096, 64), dtype=np.float32)  # 1 MiB: a large but valid request
    return RequestRecord(
        model="m",
        request_id=rid,
        received_at=datetime.now(UTC),
        source="infer",
        n_rows=4096,
        n_cols=64,
        inputs=rows.tobytes(),
    )


def _output(rid: str) -> OutputRecord:
    values = np.full((4096, 1), 0.5, dtype=np.float32).tobytes()
    return OutputRecord(
        model="m",
        request_id=rid,
        version=1,
        role="champion",
        latency_s=0.001,
        n_rows=4096,
        n_cols=1,
        values=values,
    )


def test_the_writer_keeps_no_committed_group_while_it_waits(model_store: Store) -> None:
    recorder = Recorder(model_store)
    recorder.start()

    async def burst() -> list[bool]:
        futures = [recorder.record(_large(f"r{i}"), [_output(f"r{i}")]) for i in range(50)]
        return list(await asyncio.gather(*futures))

    tracemalloc.start()
    try:
        assert asyncio.run(burst()) == [True] * 50
        # the writer reaches its wait just after resolving the futures: give it until then
        deadline = time.monotonic() + 10.0
        idle = threading.Event()
        while True:
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
            if held < 10 * MIB or time.monotonic() > deadline:
                break
            idle.wait(0.01)
        assert held < 10 * MIB, f"{held / MIB:.0f} MiB still held by the idle writer"
    finally:
        tracemalloc.stop()
        recorder.close()
