"""The group-commit writer on a real store (both backends): records of one event-loop
iteration share one commit, a response's future resolves only once its rows are stored,
duplicates are reported, and shadow outputs nobody waits for are written too."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from typing import Any

import numpy as np
import pytest
from frozen_proxy import FreezableProxy
from record_helpers import output_record as _output
from record_helpers import request_record as _request

from monitor import ServingMetrics
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._recorder import Recorder
from tunewatch.store import OutputRecord, Store
from tunewatch.store._engine import DEFAULT_LOCK_TIMEOUT_S, sqlite_file


def _commits(metrics: ServingMetrics) -> tuple[float, float]:
    """(commits, requests committed) from the batch-size histogram."""
    samples = {s.name: s.value for m in metrics.record_batch_size.collect() for s in m.samples}
    return samples["tunewatch_record_batch_size_count"], samples["tunewatch_record_batch_size_sum"]


def test_records_of_one_loop_iteration_share_one_commit(model_store: Store) -> None:
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.start()

    async def burst() -> list[bool]:
        # 20 handlers recording in the same iteration: one hand-over, one commit.
        futures = [recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(20)]
        return list(await asyncio.gather(*futures))

    try:
        assert asyncio.run(burst()) == [True] * 20
        assert _commits(metrics) == (1.0, 20.0)
        assert model_store.count_requests("m") == 20  # resolved means stored
        assert model_store.count_outputs("m", 1) == 20
    finally:
        recorder.close()


def test_a_recorded_id_comes_back_false_and_its_outputs_are_not_written(
    model_store: Store,
) -> None:
    recorder = Recorder(model_store)
    recorder.start()

    async def twice() -> tuple[bool, bool]:
        first = await recorder.record(_request("same"), [_output("same")])
        again = await recorder.record(_request("same"), [_output("same", version=2)])
        return first, again

    try:
        assert asyncio.run(twice()) == (True, False)
        assert [o.version for o in model_store.get_outputs("m", "same")] == [1]
    finally:
        recorder.close()


def test_an_id_twice_in_one_group_stores_only_the_winners_outputs(model_store: Store) -> None:
    # Two requests with one id in the same commit (a champion request and one pinned to
    # version 2): the second is refused, and its answer must not be stored under the first
    # request — nor block version 2's shadow score of the first request's rows.
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.start()

    async def same_iteration() -> list[bool]:
        futures = [
            recorder.record(_request("dup"), [_output("dup")]),
            recorder.record(_request("dup"), [_output("dup", version=2)]),
        ]
        return list(await asyncio.gather(*futures))

    try:
        assert asyncio.run(same_iteration()) == [True, False]
        assert _commits(metrics) == (1.0, 2.0)  # one group held both
        assert [o.version for o in model_store.get_outputs("m", "dup")] == [1]
        shadow = OutputRecord(
            model="m",
            request_id="dup",
            version=2,
            role="challenger",
            latency_s=0.002,
            n_rows=1,
            n_cols=1,
            values=np.array([[0.25]], dtype=np.float32).tobytes(),
        )
        recorder.record_outputs([shadow])
        _wait_for_challenger_output(model_store)
        stored = {o.version: o for o in model_store.get_outputs("m", "dup")}
        assert stored[2].values == shadow.values and stored[2].latency_s == 0.002
    finally:
        recorder.close()


def test_shadow_outputs_are_written_without_anyone_waiting(model_store: Store) -> None:
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.start()
    try:

        async def one() -> bool:
            return await recorder.record(_request("r"), [_output("r")])

        assert asyncio.run(one())
        recorder.record_outputs([_output("r", version=2)])  # from a shadow worker thread
        _wait_for_challenger_output(model_store)
        assert model_store.count_outputs("m", 2) == 1
        # a commit of shadow outputs alone is not a group of zero requests
        assert _commits(metrics) == (1.0, 1.0)
    finally:
        recorder.close()


def test_shadow_outputs_ride_in_the_next_groups_commit(model_store: Store) -> None:
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics, hold_s=30.0)
    recorder.start()
    try:
        asyncio.run(_record_many(recorder, 2))
        assert _commits(metrics) == (1.0, 2.0)
        recorder.record_outputs([_output("r0", version=2)])  # held back, not committed alone
        time.sleep(0.2)
        assert model_store.count_outputs("m", 2) == 0
        asyncio.run(_record_many(recorder, 1, start=2))
        assert _commits(metrics) == (2.0, 3.0)
        assert model_store.count_outputs("m", 2) == 1  # it rode in the second commit
    finally:
        recorder.close()


def test_held_outputs_of_a_request_are_kept_when_they_ride_with_its_duplicate(
    model_store: Store,
) -> None:
    # A replayed id in the same group must not take the earlier request's shadow outputs
    # down with its own.
    recorder = Recorder(model_store, hold_s=30.0)
    recorder.start()

    async def replay() -> bool:
        return await recorder.record(_request("r0"), [_output("r0", version=3)])

    try:
        asyncio.run(_record_many(recorder, 1))
        recorder.record_outputs([_output("r0", version=2)])  # held back
        time.sleep(0.2)
        assert asyncio.run(replay()) is False
        assert [o.version for o in model_store.get_outputs("m", "r0")] == [1, 2]
    finally:
        recorder.close()


def test_held_outputs_are_committed_when_no_group_comes(model_store: Store) -> None:
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics, hold_s=0.05)
    recorder.start()
    try:
        asyncio.run(_record_many(recorder, 1))
        recorder.record_outputs([_output("r0", version=2)])
        _wait_for_challenger_output(model_store)
        assert model_store.count_outputs("m", 2) == 1
        # the commit is counted just after it commits: the output can be read first (CI)
        deadline = time.monotonic() + 10
        while _commit_count(metrics) < 2.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _commit_count(metrics) == 2.0  # a commit of its own
        assert _commits(metrics) == (1.0, 1.0)  # ... which held no request
    finally:
        recorder.close()


def test_held_outputs_wait_no_longer_than_hold_s_however_many_follow(
    model_store: Store,
) -> None:
    recorder = Recorder(model_store, hold_s=0.3)
    recorder.start()
    try:
        asyncio.run(_record_many(recorder, 1))
        recorder.record_outputs([_output("r0", version=2)])
        for version in range(3, 13):  # more shadow results, each well within hold_s
            time.sleep(0.1)
            recorder.record_outputs([_output("r0", version=version)])
        # 1 s on, the first is stored: its deadline did not move with each arrival.
        assert model_store.count_outputs("m", 2) == 1
    finally:
        recorder.close()


def test_close_writes_what_is_queued(model_store: Store) -> None:
    recorder = Recorder(model_store)
    recorder.start()
    recorder.record_outputs([])  # nothing: no empty commit
    asyncio.run(_record_many(recorder, 5))
    recorder.record_outputs([_output("r0", version=2)])
    recorder.close()
    assert model_store.count_requests("m") == 5
    assert model_store.count_outputs("m", 2) == 1


def _commit_count(metrics: ServingMetrics) -> float:
    return next(
        s.value
        for m in metrics.record_commit_latency.collect()
        for s in m.samples
        if s.name == "tunewatch_record_commit_seconds_count"
    )


def _wait_for_challenger_output(store: Store) -> None:
    deadline = time.monotonic() + 10
    while store.count_outputs("m", 2) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


async def _record_many(recorder: Recorder, n: int, start: int = 0) -> None:
    await asyncio.gather(
        *(recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(start, start + n))
    )


def test_a_record_the_store_refuses_fails_alone_not_its_whole_group(model_store: Store) -> None:
    """A group commit that fails is retried record by record: the requests that shared it
    with a bad one (here an output whose version overflows the store's integer) are
    stored and acknowledged, and only the bad one gets the error."""
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.start()

    async def burst() -> list[bool | BaseException]:
        futures = [recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(5)]
        futures.insert(2, recorder.record(_request("bad"), [_output("bad", version=2**63)]))
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        results = asyncio.run(burst())
        assert isinstance(results.pop(2), StoreError)
        assert results == [True] * 5
        assert model_store.count_requests("m") == 5
        assert model_store.count_outputs("m", 1) == 5
    finally:
        recorder.close()


def test_an_unavailable_store_fails_the_group_once_not_record_by_record(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrying each record of a group is for a record the store refuses; when the store
    itself is unavailable every record would wait out the same failure in turn."""
    calls: list[int] = []

    def unavailable(
        requests: object, outputs: object, shadow_outputs: object = (), tallies: object = ()
    ) -> None:
        calls.append(len(requests))  # type: ignore[arg-type]
        raise StoreUnavailableError("store write_records: database unavailable: locked")

    monkeypatch.setattr(model_store, "write_records", unavailable)
    recorder = Recorder(model_store)
    recorder.start()

    async def burst() -> list[bool | BaseException]:
        futures = [recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(5)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        results = asyncio.run(burst())
        assert all(isinstance(r, StoreUnavailableError) for r in results)
        assert calls == [5]
    finally:
        recorder.close()


def test_a_record_after_close_fails_at_once_instead_of_waiting_forever(model_store: Store) -> None:
    """A handler recording while the daemon shut down queued its record for a writer
    that had stopped: its future never resolved and the request hung."""
    recorder = Recorder(model_store)
    recorder.start()
    recorder.close()

    async def late() -> None:
        await asyncio.wait_for(recorder.record(_request("late"), [_output("late")]), 5.0)

    with pytest.raises(StoreUnavailableError, match="closed"):
        asyncio.run(late())
    assert model_store.count_requests("m") == 0


def test_records_handed_over_as_the_writer_stops_are_failed_not_left_waiting(
    model_store: Store,
) -> None:
    recorder = Recorder(model_store)
    recorder.start()

    async def racing() -> list[object]:
        futures = [recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(5)]
        recorder.close()  # before this iteration's records are handed over
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5.0)

    results = asyncio.run(racing())
    assert all(isinstance(r, StoreUnavailableError) for r in results), results


def _failures(metrics: ServingMetrics) -> float:
    return next(
        s.value
        for m in metrics.record_failures.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


def test_records_queued_behind_an_unavailable_group_fail_with_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another session holds the write lock, each group waited out its own lock
    timeout: a request behind N groups got its 503 after N timeouts (12 requests in
    groups of 2 at 0.3 s: the last after 1.8 s), the queue growing all the while. Now
    everything queued when a group fails as unavailable fails with it, unwritten."""
    store = Store.open(sqlite_url, lock_timeout_s=0.3)
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    attempts: list[int] = []
    writing = threading.Event()
    write_records = store.write_records

    def spy(requests: Any, outputs: Any, shadow_outputs: Any = (), tallies: Any = ()) -> list[bool]:
        attempts.append(len(requests))
        writing.set()
        return write_records(requests, outputs, shadow_outputs, tallies)

    monkeypatch.setattr(store, "write_records", spy)
    metrics = ServingMetrics()
    recorder = Recorder(store, metrics=metrics, max_batch=2)
    recorder.start()
    locker = sqlite3.connect(sqlite_file(sqlite_url) or "", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer (a migration, retention) holds it

    async def behind_a_blocked_commit() -> list[object]:
        futures = [recorder.record(_request("r0"), [_output("r0")])]
        assert await asyncio.to_thread(writing.wait, 10.0)  # r0's commit waits on the lock
        for i in range(1, 12):  # one hand-off per loop iteration: groups of max_batch
            futures.append(recorder.record(_request(f"r{i}"), [_output(f"r{i}")]))
            await asyncio.sleep(0)
        recorder.record_outputs([_output("r0", version=2)])  # a shadow output, held too
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        results = asyncio.run(behind_a_blocked_commit())
        assert isinstance(results[0], StoreUnavailableError)
        assert all(r is results[0] for r in results)  # the same error, not their own
        assert attempts == [1]  # nothing behind the failed group was tried
        assert _failures(metrics) == 2.0  # the failed commit, and what queued behind it
        locker.rollback()  # the lock is free again: the writer goes on
        assert asyncio.run(_record_one(recorder, "after")) is True
    finally:
        locker.rollback()
        locker.close()
        recorder.close()
        store.close()


def test_a_writer_still_committing_when_close_times_out_stops_once_its_commit_ends(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``close`` drained everything left after its timeout, the stop marker with it: a
    writer held in a commit past the timeout then waited on its queue forever."""
    store = Store.open(sqlite_url, lock_timeout_s=30.0)  # the commit waits for the locker
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    writing = threading.Event()
    write_records = store.write_records

    def spy(requests: Any, outputs: Any, shadow_outputs: Any = (), tallies: Any = ()) -> list[bool]:
        writing.set()
        return write_records(requests, outputs, shadow_outputs, tallies)

    monkeypatch.setattr(store, "write_records", spy)
    before = set(threading.enumerate())
    recorder = Recorder(store)
    recorder.start()
    (writer,) = [t for t in threading.enumerate() if t not in before]
    locker = sqlite3.connect(sqlite_file(sqlite_url) or "", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")

    async def close_during_a_commit() -> bool:
        future = recorder.record(_request("r0"), [_output("r0")])
        assert await asyncio.to_thread(writing.wait, 10.0)  # r0's commit waits on the lock
        await asyncio.to_thread(recorder.close, 0.05)  # times out: the writer is held
        locker.rollback()  # the commit goes on
        return await future

    try:
        assert asyncio.run(close_during_a_commit()) is True
        assert store.count_requests("m") == 1
        writer.join(10.0)
        assert not writer.is_alive()
    finally:
        locker.rollback()
        locker.close()
        store.close()


def test_a_group_retried_record_by_record_stops_once_the_store_is_unavailable(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused group is retried one record at a time; when the store turns unavailable
    during the retry, each remaining record would wait out its own lock timeout."""
    calls: list[int] = []

    def refused_then_unavailable(
        requests: Any, outputs: object, shadow_outputs: object = (), tallies: object = ()
    ) -> None:
        calls.append(len(requests))
        if len(calls) == 1:
            raise StoreError("store write_records: value out of range")
        raise StoreUnavailableError("store write_records: database unavailable: locked")

    monkeypatch.setattr(model_store, "write_records", refused_then_unavailable)
    recorder = Recorder(model_store)
    recorder.start()

    async def burst() -> list[object]:
        futures = [recorder.record(_request(f"r{i}"), [_output(f"r{i}")]) for i in range(5)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        results = asyncio.run(burst())
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
        assert calls == [5, 1]
    finally:
        recorder.close()


def test_outputs_recorded_after_close_are_counted_as_failures_and_logged_once(
    model_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A shadow drain that finishes after the daemon closed its recorder put its outputs
    on a queue nobody reads: not written, counted nowhere."""
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.start()
    recorder.close()
    with caplog.at_level(logging.WARNING, logger="tunewatch._recorder"):
        recorder.record_outputs([_output("r0", version=2)])
        recorder.record_outputs([_output("r1", version=2)])
    assert _failures(metrics) == 2.0
    assert len([r for r in caplog.records if "after the recorder closed" in r.message]) == 1
    assert model_store.count_outputs("m", 2) == 0


def test_outputs_no_writer_took_are_counted_as_failures_on_close(model_store: Store) -> None:
    """Records left in the queue by a writer that did not stop in time (here: never ran)
    are failed on close; shadow outputs among them have no future to fail, so they are
    counted."""
    metrics = ServingMetrics()
    recorder = Recorder(model_store, metrics=metrics)
    recorder.record_outputs([_output("r0", version=2)])
    recorder.close()
    assert _failures(metrics) == 1.0


async def _record_one(recorder: Recorder, rid: str) -> bool:
    return await recorder.record(_request(rid), [_output(rid)])


def test_commit_latency_buckets_reach_the_longest_lock_wait() -> None:
    """The commit histogram had the inference buckets, the largest finite one 1 s: a commit
    stalled seconds on a lock (up to the store's lock timeout) landed in +Inf, and
    ``histogram_quantile`` (the dashboard's p99 commit) read 1 s at most."""
    metrics = ServingMetrics()
    metrics.record_commit_latency.observe(5.0)  # a commit that waited 5 s for a lock
    buckets = {
        float(s.labels["le"]): s.value
        for m in metrics.record_commit_latency.collect()
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    finite = sorted(le for le in buckets if le != float("inf"))
    assert finite[-1] >= DEFAULT_LOCK_TIMEOUT_S
    below = max(le for le in finite if le < 5.0)
    assert (buckets[below], buckets[5.0]) == (0.0, 1.0)  # told from a shorter stall
    assert below >= 2.5 and finite[0] <= 0.001  # and a fast commit from a slow one


@pytest.mark.postgres
def test_requests_waiting_on_a_commit_through_a_frozen_connection_fail_as_unavailable(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy that keeps PostgreSQL's connection open but stops forwarding held the
    writer in its commit forever: every scoring request waited, none got its 503, and
    nothing was logged. The write's client-side deadline (lock timeout + 5 s) ends it."""
    with FreezableProxy() as proxy:
        store = Store.open(f"{proxy.url(pg_url)}&connect_timeout=2", lock_timeout_s=1.0)
        recorder = Recorder(store)
        try:
            store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
            recorder.start()
            assert asyncio.run(_record_one(recorder, "before")) is True
            proxy.freeze()

            async def through_a_frozen_connection() -> list[object]:
                futures = [_record_one(recorder, f"r{i}") for i in range(3)]
                waiting = asyncio.gather(*futures, return_exceptions=True)
                return list(await asyncio.wait_for(waiting, timeout=30.0))

            with caplog.at_level(logging.WARNING):
                try:
                    results = asyncio.run(through_a_frozen_connection())
                finally:
                    proxy.thaw()  # a writer still waiting goes on, so the test ends
            assert all(isinstance(r, StoreUnavailableError) for r in results), results
            assert all("deadline" in str(r) for r in results), results
            logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert any("deadline of 6 s" in r.getMessage() for r in logged), logged
            # the pool recovered: its first commit may still meet a connection the freeze
            # left behind, and the reconnect that replaces it time out (seen once in CI,
            # under load); the next commit must succeed
            try:
                recovered = asyncio.run(_record_one(recorder, "after"))
            except StoreUnavailableError:
                recovered = asyncio.run(_record_one(recorder, "after-again"))
            assert recovered is True
        finally:
            proxy.thaw()
            recorder.close()
            store.close()
