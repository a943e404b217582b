"""At SIGTERM a request in flight ends in its answer or a JSON 503, never cut off, and a
request answered 503 is not stored.

uvicorn gives the requests in flight :func:`~tunewatch._daemon.request_grace_s` (one
commit's lock wait and write deadline, and 5 s) and then cancels them: a bare text/plain
500. The recorder is closed only after that, and wrote what was still queued. A request
queued behind a group waiting for a lock waited for that group and then for its own
commit, twice the lock timeout: behind two lock holders in a row (each under the lock
timeout) the second group was cancelled, 500 to its clients, and committed as the recorder
closed, so each retry was refused as a duplicate. Now, once shutdown begins, a request
whose commit has not started in time to end within the grace fails with
``StoreUnavailableError`` (503 ``store_unavailable``), unwritten; the commit already
running finishes.

Played here as the server plays it, on the real store and the real close path, with the
grace's clock injected: SIGTERM (``begin_shutdown``), the grace passes, the handlers still
waiting are cancelled, then the recorder closes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from record_helpers import output_record, request_record
from sqlalchemy import make_url

from tunewatch._config import build_config
from tunewatch._daemon import request_grace_s
from tunewatch._errors import StoreUnavailableError
from tunewatch._recorder import Recorder
from tunewatch.store import Store
from tunewatch.store._write_deadline import WRITE_DEADLINE_MARGIN_S

LOCK_TIMEOUT_S = 5.0  # each holder lets go well before it: every commit gets its lock
GIVE_UP_S = 10.0  # a guard against a hang, not a timing assertion
GROUP = 10  # requests of one event-loop iteration: one group


class _Clock:
    """The recorder's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Holder:
    """Another session taking ``LOCK TABLE requests, outputs IN EXCLUSIVE MODE`` (after
    whoever waits for the lock before it) and keeping it until :meth:`release`."""

    def __init__(self, store_url: str) -> None:
        url = make_url(store_url)
        self.schema = str(url.query["options"]).removeprefix("-csearch_path=")
        self.dsn = (
            f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
        )
        self.holding = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold)

    def start(self) -> None:
        self._thread.start()

    def _hold(self) -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute(
                f'LOCK TABLE "{self.schema}".requests, "{self.schema}".outputs IN EXCLUSIVE MODE'
            )
            self.holding.set()
            self._release.wait(GIVE_UP_S * 3)
            conn.rollback()

    def release(self) -> None:
        self._release.set()
        self._thread.join(GIVE_UP_S)


def _waiting_for_requests(holder: _Holder) -> int:
    """Sessions waiting for a lock on the ``requests`` table."""
    with psycopg.connect(holder.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            (f'"{holder.schema}".requests',),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds: the store's lock queue can only be looked at."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GIVE_UP_S
    while not condition():
        assert loop.time() < give_up, "gave up waiting"
        await asyncio.sleep(0.01)


def _answer(task: asyncio.Task[bool]) -> str:
    """What the client of a handler awaiting ``task`` got."""
    if task.cancelled():
        return "500 text/plain"  # uvicorn's, once the grace is over
    error = task.exception()
    if error is None:
        return "200" if task.result() else "409"
    if isinstance(error, StoreUnavailableError):
        return "503 store_unavailable"
    return f"500 {error!r}"


@pytest.mark.postgres
def test_requests_behind_a_slow_commit_at_sigterm_are_answered_503_in_the_grace_and_not_stored(
    pg_url: str, tmp_path: Path
) -> None:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "store": {"url": pg_url, "lock_timeout_s": LOCK_TIMEOUT_S},
        },
        env={},
    )
    grace_s = request_grace_s(config)
    store = Store.open(pg_url, lock_timeout_s=LOCK_TIMEOUT_S)
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    clock = _Clock()
    recorder = Recorder(store, monotonic=clock)
    recorder.start()
    first, second = _Holder(pg_url), _Holder(pg_url)

    def handle(rid: str) -> asyncio.Task[bool]:
        async def handler() -> bool:
            return await recorder.record(request_record(rid), [output_record(rid)])

        return asyncio.create_task(handler())

    async def sigterm_behind_two_lock_holders() -> dict[str, asyncio.Task[bool]]:
        first.start()
        assert await asyncio.to_thread(first.holding.wait, GIVE_UP_S)
        tasks = {f"g1-{i}": handle(f"g1-{i}") for i in range(GROUP)}
        await _until(lambda: _waiting_for_requests(first) == 1)  # group 1's commit waits
        tasks |= {f"g2-{i}": handle(f"g2-{i}") for i in range(GROUP)}  # queued behind it
        await asyncio.sleep(0)  # handed to the writer
        shutdown_began = clock.now
        recorder.begin_shutdown(grace_s=grace_s, commit_s=LOCK_TIMEOUT_S + WRITE_DEADLINE_MARGIN_S)
        second.start()  # asks for the lock behind group 1's commit
        await _until(lambda: _waiting_for_requests(first) == 2)
        clock.now = shutdown_began + LOCK_TIMEOUT_S - 1  # the first holder lets go in time
        first.release()
        group1 = [t for rid, t in tasks.items() if rid.startswith("g1-")]
        await asyncio.wait_for(asyncio.wait(group1), GIVE_UP_S)
        group2 = [t for rid, t in tasks.items() if rid.startswith("g2-")]
        # the second group is either answered, or its commit waits behind the second holder
        await _until(lambda: all(t.done() for t in group2) or _waiting_for_requests(first) == 1)
        clock.now = shutdown_began + grace_s  # the grace is over: uvicorn cancels the rest
        for task in tasks.values():
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        await asyncio.wait(tasks.values())
        return tasks

    try:
        tasks = asyncio.run(sigterm_behind_two_lock_holders())
        second.release()
        recorder.close()  # the lifespan's shutdown, after the grace
        answers = {rid: _answer(task) for rid, task in tasks.items()}
        stored = set(store.request_ids("m"))
    finally:
        first.release()
        second.release()
        recorder.close()
        store.close()
    # answered anything but 200 and stored anyway: a retry is refused as a duplicate
    assert {rid: a for rid, a in answers.items() if a != "200" and rid in stored} == {}
    assert {rid: a for rid, a in answers.items() if a not in {"200", "503 store_unavailable"}} == {}
    # the commit running at SIGTERM finished; the one behind it would have ended too late
    assert {rid for rid, a in answers.items() if a == "200"} == {f"g1-{i}" for i in range(GROUP)}
    assert stored == {f"g1-{i}" for i in range(GROUP)}
