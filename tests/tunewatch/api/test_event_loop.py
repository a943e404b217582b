"""A database that stops answering must not stall the event loop: liveness and requests
whose token is cached keep being answered while a readiness probe or a token lookup
waits on the database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel

WAIT_S = 10.0


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Any, str, dict]]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    with BackgroundServer(daemon.app) as server:
        yield daemon, server.url, tokens
    daemon.close()


def _hang(release: threading.Event, entered: threading.Event, call: Callable[..., Any]):  # type: ignore[no-untyped-def]
    def hung(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(WAIT_S)
        return call(*args, **kwargs)

    return hung


@pytest.mark.parametrize("stalled", ["readiness_probe", "token_lookup"])
def test_the_loop_answers_while_the_database_hangs(
    served: tuple[Any, str, dict], stalled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, url, tokens = served
    release, entered = threading.Event(), threading.Event()
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert httpx.get(f"{url}/v2/models/{MODEL}", headers=viewer).status_code == 200  # cached
    if stalled == "readiness_probe":
        monkeypatch.setattr(daemon.store, "ping", _hang(release, entered, daemon.store.ping))
        path, headers = "/v2/health/ready", {}
    else:
        fresh = new_token()
        daemon.store.add_token(
            name="late", role="viewer", token_hash=hash_token(fresh), actor="test"
        )
        auth = daemon.auth
        monkeypatch.setattr(auth, "_lookup", _hang(release, entered, auth._lookup))
        path, headers = f"/v2/models/{MODEL}", {"Authorization": f"Bearer {fresh}"}
    result: dict[str, int] = {}
    waiting = threading.Thread(
        target=lambda: result.update(
            status=httpx.get(f"{url}{path}", headers=headers, timeout=WAIT_S).status_code
        )
    )
    waiting.start()
    try:
        assert entered.wait(WAIT_S)
        assert httpx.get(f"{url}/v2/health/live", timeout=3.0).status_code == 200
        cached = httpx.get(f"{url}/v2/models/{MODEL}", headers=viewer, timeout=3.0)
        assert cached.status_code == 200
    finally:
        release.set()
        waiting.join(WAIT_S)
    assert result == {"status": 200}


def test_a_token_lookup_the_database_refuses_is_a_503_and_liveness_stays_up(
    served: tuple[Any, str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookup made before a request escaped the app as a bare 500 (no JSON, not
    counted) on every route, liveness included, while the database was down."""
    daemon, url, _ = served

    def down(digest: str) -> None:
        raise StoreUnavailableError("store token_by_hash: database unavailable")

    monkeypatch.setattr(daemon.auth, "_lookup", down)
    fresh = {"Authorization": f"Bearer {new_token()}"}
    body = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}
    infer = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, headers=fresh)
    assert infer.status_code == 503 and infer.json()["code"] == "store_unavailable", infer.text
    models = httpx.get(f"{url}/v1/models", headers=fresh)
    assert models.status_code == 503 and set(models.json()) == {"error", "code"}, models.text
    assert httpx.get(f"{url}/v2/health/live", headers=fresh).status_code == 200


def test_the_first_of_two_authorization_headers_is_the_one_everywhere(
    served: tuple[Any, str, dict],
) -> None:
    """The front looked up the last header off the loop while routes read the first,
    which was then looked up on the loop."""
    _, url, tokens = served
    headers = [
        ("Authorization", f"Bearer {tokens['scorer']}"),
        ("Authorization", "Bearer tw_not_a_token"),
    ]
    body = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}
    r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, headers=headers)
    assert r.status_code == 200, r.text


def test_health_and_metrics_do_not_wait_on_a_hung_token_store(
    served: tuple[Any, str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe or a scrape carrying a token (Prometheus with a bearer token) waited on the
    token lookup, though these routes read no token: with the database hung, liveness
    answered only when the lookup did."""
    daemon, url, _ = served
    release, entered = threading.Event(), threading.Event()
    auth = daemon.auth
    monkeypatch.setattr(auth, "_lookup", _hang(release, entered, auth._lookup))
    fresh = {"Authorization": f"Bearer {new_token()}"}
    open_paths = (
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        f"/v2/models/{MODEL}/ready",
        f"/v2/models/{MODEL}/versions/1/ready",
    )
    try:
        for path in open_paths:
            assert httpx.get(f"{url}{path}", headers=fresh, timeout=3.0).status_code == 200, path
        assert not entered.is_set()
        result: dict[str, int] = {}
        waiting = threading.Thread(  # a route that reads the token still looks it up
            target=lambda: result.update(
                status=httpx.get(f"{url}/v1/models", headers=fresh, timeout=WAIT_S).status_code
            )
        )
        waiting.start()
        assert entered.wait(WAIT_S)
        assert httpx.get(f"{url}/healthz", headers=fresh, timeout=3.0).status_code == 200
    finally:
        release.set()
    waiting.join(WAIT_S)
    assert result == {"status": 401}


def test_the_async_routes_read_the_store_off_the_event_loop(
    served: tuple[Any, str, dict],
) -> None:
    """`POST /v1/models/{m}/retune` read the model on the loop: a slow database held
    every request, liveness included, for as long as the read took."""
    daemon, url, tokens = served
    on_loop: list[str] = []

    def checkout(*_: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        on_loop.append(threading.current_thread().name)

    engine = daemon.store._engine
    event.listen(engine, "engine_connect", checkout)
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    try:
        calls = [
            ("POST", f"/v1/models/{MODEL}/retune", {"reason": "test"}),
            ("POST", "/v1/models/nope/retune", {"reason": "test"}),
            ("POST", f"/v1/models/{MODEL}/compare", None),
            ("POST", f"/v1/models/{MODEL}/evaluate", None),
            ("GET", f"/v1/models/{MODEL}/comparisons", None),
            ("GET", f"/v2/models/{MODEL}", None),
            ("GET", f"/v2/models/{MODEL}/ready", None),
        ]
        statuses = [
            httpx.request(
                method, f"{url}{path}", json=body, headers=operator, timeout=30.0
            ).status_code
            for method, path, body in calls
        ]
    finally:
        event.remove(engine, "engine_connect", checkout)
    assert statuses[1] == 404 and all(s < 500 for s in statuses), statuses
    assert on_loop == []
