"""The scoring log has a connection of its own: it took one from the store's shared
pool (5 + 10 connections, a 30 s wait for one), so store traffic that held them all — label
writes queued behind one locked row, long reads — held every scoring answer for up to
30 s, past the lock timeout and the write deadline, and then failed it (503)."""

from __future__ import annotations

import asyncio
import contextlib

from record_helpers import output_record, request_record

from tunewatch._recorder import Recorder
from tunewatch.store import Store


def test_a_pool_held_by_other_store_traffic_does_not_hold_the_scoring_log(
    model_store: Store,
) -> None:
    pool = model_store.engine.pool
    recorder = Recorder(model_store)
    recorder.start()
    with contextlib.ExitStack() as held:
        # every connection the shared pool may hand out, taken by other work
        for _ in range(pool.size() + model_store.engine.pool._max_overflow):  # type: ignore[attr-defined]
            held.enter_context(model_store.engine.connect())
        try:

            async def score() -> bool:
                return await recorder.record(request_record("r1"), [output_record("r1")])

            assert asyncio.run(score()) is True
        finally:
            recorder.close()
    assert model_store.count_requests("m") == 1
