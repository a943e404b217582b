"""The readiness probes answer while every thread of anyio's default pool is taken.

That pool (40 threads) runs sync handlers, body parsing and the store's reads and
writes; with 40 labellers each posting a 10,000-item body at once it was full, and
``/healthz`` and ``/readyz`` (then sync handlers) and ``/v2/health/ready`` (its store
check in that pool) took 16 s to answer: a Kubernetes readiness probe (1 s timeout)
would have taken the replica out of service during a label backfill, a liveness probe
restarted it. ``/healthz`` takes no thread now, and the readiness probes' store checks
run in worker threads of their own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
from anyio import to_thread
from starlette.concurrency import run_in_threadpool

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures
HOLD_S = 3 * WAIT_S  # held threads outlast a probe left waiting for one
PROBES = (
    "/healthz",  # liveness: waiting behind the pool, a probe's timeout restarts the daemon
    "/v2/health/live",
    "/readyz",
    "/v2/health/ready",
    f"/v2/models/{MODEL}/ready",
    f"/v2/models/{MODEL}/versions/1/ready",
)


@pytest.fixture(scope="module")
def probed(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("probed"), trained) as served:
        yield served


class _FullPool:
    """Every token of the daemon's default thread limiter taken by a worker thread that
    waits for :attr:`release`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._loop = loop

    def _hold(self) -> None:
        self.entered.release()
        assert self.release.wait(HOLD_S), "the held worker thread was never released"

    async def _tokens(self) -> tuple[int, int]:
        limiter = to_thread.current_default_thread_limiter()
        return int(limiter.total_tokens), int(limiter.borrowed_tokens)

    async def _take_all(self, n: int) -> None:
        await asyncio.gather(*(run_in_threadpool(self._hold) for _ in range(n)))

    def tokens(self) -> tuple[int, int]:
        """(total, borrowed) tokens of the default limiter, read on the daemon's loop."""
        return asyncio.run_coroutine_threadsafe(self._tokens(), self._loop).result(WAIT_S)

    def fill(self) -> int:
        total, _ = self.tokens()
        asyncio.run_coroutine_threadsafe(self._take_all(total), self._loop)
        for _ in range(total):
            assert self.entered.acquire(timeout=WAIT_S)
        return total


@pytest.fixture
def full_pool(probed: Running) -> Iterator[_FullPool]:
    (listening,) = probed.server.server.servers  # uvicorn's asyncio server on loopback
    pool = _FullPool(listening.get_loop())
    try:
        yield pool
    finally:
        pool.release.set()


def test_the_readiness_probes_answer_while_the_default_thread_pool_is_full(
    probed: Running, full_pool: _FullPool
) -> None:
    total = full_pool.fill()
    assert full_pool.tokens() == (total, total)  # no worker thread of the pool is free

    for path in PROBES:
        r = httpx.get(f"{probed.url}{path}", timeout=WAIT_S)
        assert r.status_code == 200, (path, r.text[:300])
        assert full_pool.tokens() == (total, total), f"{path} took a thread of the pool"
    ready = httpx.get(f"{probed.url}/readyz", timeout=WAIT_S)
    assert ready.json() == {"status": "ok", "models": [MODEL]}


def test_the_readiness_probes_answer_as_before(probed: Running) -> None:
    ready = httpx.get(f"{probed.url}/readyz", timeout=WAIT_S)
    assert ready.status_code == 200 and ready.headers["content-type"] == "application/json"
    assert ready.json() == {"status": "ok", "models": [MODEL]}
    assert httpx.head(f"{probed.url}/readyz", timeout=WAIT_S).status_code == 200
    assert httpx.get(f"{probed.url}/healthz", timeout=WAIT_S).json() == {"status": "ok"}
    for path in PROBES:
        assert httpx.get(f"{probed.url}{path}", timeout=WAIT_S).status_code == 200, path
    missing = httpx.get(f"{probed.url}/v2/models/{MODEL}/versions/9/ready", timeout=WAIT_S)
    assert missing.status_code == 404 and missing.json()["code"] == "version_not_found"
