"""Bearer tokens not in the authenticator's cache are looked up a few at once per process.

The front looked each such token up in a worker thread of anyio's default pool with no
bound of its own: a flood of made-up tokens (each a distinct miss) could take all 40 of
that pool's threads with store reads, and every other off-loop piece of work (dashboard
reads, listings, governance routes, a named version's inference) waited behind them.
At most :data:`MAX_TOKEN_LOOKUPS` run now; the next waits on the event loop without a
thread, and a token whose answer is cached is answered meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

from tests.tunewatch.conftest import MODEL, HeldCalls, Running, holding, in_flight, serving
from tunewatch._example import ExampleModel
from tunewatch.api import _lookups
from tunewatch.api._lookups import MAX_TOKEN_LOOKUPS
from tunewatch.dashboard import _auth

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures
ROW = [0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 0.5, 0.25]
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def served(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    # answers kept an hour: the valid tokens stay cached however long the test runs
    with serving(
        tmp_path_factory.mktemp("token_lookups"),
        trained,
        extra={"auth": {"token_cache_ttl_s": 3600}},
    ) as running:
        yield running


def _made_up_token() -> str:
    return f"Bearer tw_{secrets.token_urlsafe(32)}"


def _infer_body(request_id: str) -> bytes:
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}
    return json.dumps({"id": request_id, "inputs": [tensor]}).encode()


async def _asgi_status(app: Any, method: str, path: str, authorization: str) -> int:
    """The status ``app`` answers a request of ``method`` and ``path``, sent to it directly
    on the running event loop."""
    body = _infer_body(secrets.token_hex(8)) if method == "POST" else b""
    headers = [(b"host", b"127.0.0.1"), (b"authorization", authorization.encode())]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    ended = anyio.Event()

    async def receive() -> dict[str, Any]:
        if not ended.is_set():
            ended.set()
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.Event().wait()  # never: the request is not cut short
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    return int(start["status"])


async def _start_waiting(app: Any, method: str, path: str) -> tuple[asyncio.Task[int], int, int]:
    """On the daemon's loop: one more request with a made-up token, run until every task
    of the loop waits; the request, and the look-ups' (threads in use, tasks waiting)."""
    request = asyncio.create_task(_asgi_status(app, method, path, _made_up_token()))
    await anyio.wait_all_tasks_blocked()
    stats = _lookups.token_lookups().statistics()
    return request, int(stats.borrowed_tokens), stats.tasks_waiting


async def _answer(request: asyncio.Task[int]) -> int:
    return await request


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/models"), ("POST", INFER)])
def test_a_made_up_token_past_the_bound_waits_while_cached_tokens_are_answered(
    served: Running, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    models = f"{served.url}/v1/models"
    infer = f"{served.url}{INFER}"
    viewer, scorer = served.auth("viewer"), served.auth("scorer")
    # both valid tokens looked up once, before the flood: their answers are cached
    assert httpx.get(models, headers=viewer, timeout=WAIT_S).status_code == 200
    scored = httpx.post(infer, content=_infer_body("warm"), headers=scorer, timeout=WAIT_S)
    assert scored.status_code == 200, scored.text
    (listening,) = served.server.server.servers  # uvicorn's asyncio server on loopback
    loop = listening.get_loop()
    store = served.daemon.runtime.store
    flood = [lambda: httpx.get(models, headers={"Authorization": _made_up_token()}, timeout=WAIT_S)]
    with holding(monkeypatch, store, "token_by_hash", MAX_TOKEN_LOOKUPS) as held:
        threads, answers = in_flight(flood * MAX_TOKEN_LOOKUPS)
        request: asyncio.Task[int] | None = None
        try:
            for _ in threads:  # every look-up's thread is held in the store's read
                assert held.entered.acquire(timeout=WAIT_S)
            request, in_use, waiting = asyncio.run_coroutine_threadsafe(
                _start_waiting(served.daemon.app, method, path), loop
            ).result(WAIT_S)
            # the one past the bound holds no thread: it waits for a look-up's turn
            assert (in_use, waiting) == (MAX_TOKEN_LOOKUPS, 1)
            assert not held.entered.acquire(blocking=False)

            # a cached token is answered meanwhile, on every kind of route
            listed = httpx.get(models, headers=viewer, timeout=WAIT_S)
            assert listed.status_code == 200, listed.text
            scored = httpx.post(
                infer, content=_infer_body("meanwhile"), headers=scorer, timeout=WAIT_S
            )
            assert scored.status_code == 200, scored.text
        finally:
            held.release.set()
            for t in threads:
                t.join(WAIT_S)
        assert request is not None
        status = asyncio.run_coroutine_threadsafe(_answer(request), loop).result(WAIT_S)
    assert status == 401
    assert sorted(a.status_code for a in answers) == [401] * MAX_TOKEN_LOOKUPS
    assert [a.json()["code"] for a in answers] == ["invalid_token"] * MAX_TOKEN_LOOKUPS


@pytest.mark.parametrize(
    ("look_up", "limiter", "most"),
    [
        pytest.param(
            _lookups.bounded_token_lookup, _lookups.token_lookups, MAX_TOKEN_LOOKUPS, id="tokens"
        ),
        pytest.param(
            _auth.bounded_lookup, _auth.session_lookups, _auth.MAX_SESSION_LOOKUPS, id="sessions"
        ),
    ],
)
def test_look_ups_beyond_the_bound_wait_for_one_to_finish(
    look_up: Callable[[Callable[[], int]], Awaitable[int]],
    limiter: Callable[[], anyio.CapacityLimiter],
    most: int,
) -> None:
    """At most ``most`` look-ups of bearer tokens, and as many of dashboard sessions, run
    (each in a worker thread) at once; the next waits on the event loop, holding no
    thread, until one is done."""
    held = HeldCalls(lambda n: n, most + 1, wait_s=WAIT_S)
    results: list[int] = []

    async def one(n: int) -> None:
        results.append(await look_up(partial(held, n)))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(most + 1):
                tg.start_soon(one, n)
            for _ in range(most):
                assert await anyio.to_thread.run_sync(held.entered.acquire, True, WAIT_S)
            await anyio.wait_all_tasks_blocked()
            # the one past the bound never entered: it is waiting for a look-up's thread
            assert not held.entered.acquire(blocking=False)
            assert limiter().statistics().tasks_waiting == 1
            held.release.set()
        assert sorted(results) == list(range(most + 1))

    try:
        anyio.run(main)
    finally:
        held.release.set()


def test_token_and_session_look_ups_are_bounded_apart() -> None:
    """A flood of made-up tokens does not hold up signed-in viewers' session look-ups."""

    async def main() -> None:
        assert _lookups.token_lookups() is _lookups.token_lookups()
        assert _auth.session_lookups() is not _lookups.token_lookups()
        assert _lookups.token_lookups().total_tokens == MAX_TOKEN_LOOKUPS

    anyio.run(main)
