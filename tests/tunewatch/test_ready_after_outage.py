"""A replica out of rotation is ready again as soon as its database answers: it kept
answering 503 for ``READY_RECHECK_S`` (30 s) after a PostgreSQL restart, since only a
commit ended the failure and no request came to commit (55 probes answered 503, the first
200 came 27.8 s after the database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tests.tunewatch.tcp_proxy import TcpProxy
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

pytestmark = pytest.mark.postgres

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
INFER = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}]}
READY_ROUTES = ("/readyz", "/v2/health/ready", f"/v2/models/{MODEL}/ready")


@pytest.fixture
def proxied(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> Iterator[tuple[Running, list[TcpProxy]]]:
    """A serving daemon whose store is reached through a proxy (the list's last)."""
    url = make_url(pg_url)
    target = (url.host or "127.0.0.1", url.port or 5432)
    proxies = [TcpProxy(target)]
    through = url.set(host="127.0.0.1", port=proxies[0].port).render_as_string(False)
    daemon, tokens = make_daemon(
        tmp_path, trained, store_url=through, extra={"scheduler": {"enabled": False}}
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens), proxies
    finally:
        proxies[-1].close()
        daemon.close()


def _ready(running: Running) -> list[int]:
    return [httpx.get(f"{running.url}{r}", timeout=30.0).status_code for r in READY_ROUTES]


def test_readiness_returns_with_the_database_though_no_request_commits(
    proxied: tuple[Running, list[TcpProxy]],
) -> None:
    running, proxies = proxied
    infer = f"{running.url}/v2/models/{MODEL}/infer"
    assert httpx.post(infer, json=INFER, headers=running.auth("scorer")).status_code == 200
    proxies[-1].close()  # the outage: a commit fails, then the probes' pings
    failed = httpx.post(infer, json=INFER, headers=running.auth("scorer"), timeout=30.0)
    assert failed.status_code == 503 and failed.json()["code"] == "store_unavailable"
    assert _ready(running) == [503] * len(READY_ROUTES)
    # the database is back; the load balancer sends nothing until the replica is ready
    proxies.append(TcpProxy(proxies[-1].target, port=proxies[-1].port))
    assert _ready(running) == [200] * len(READY_ROUTES)
