"""A client that goes away before sending its whole body gets no answer and is no error
of ours: it is logged at debug and counted as status 499 (client closed request), on
the ``/v1`` POST routes (the mirror, feedback, the Alertmanager webhook, a FastAPI
route) as on the inference front. It reached the unexpected-error handler: two ERROR
tracebacks of ``ClientDisconnect`` and a 500 ``internal``, so the 5xx panels moved
whenever a client timed out."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.tunewatch.conftest import MODEL, Running

# (route template, path, role, extra header lines)
CASES = [
    ("/v1/models/{model}/records", f"/v1/models/{MODEL}/records", "scorer", ""),
    ("/v1/models/{model}/feedback", f"/v1/models/{MODEL}/feedback", "labeller", ""),
    ("/v1/alerts/alertmanager", "/v1/alerts/alertmanager", "alertmanager", ""),
    ("/v1/models/{model}/rollback", f"/v1/models/{MODEL}/rollback", "operator", ""),
    # a compressed body is read through the body limit's inflating receive
    (
        "/v1/models/{model}/records",
        f"/v1/models/{MODEL}/records",
        "scorer",
        "Content-Encoding: gzip\r\n",
    ),
    ("/v2/models/{model}/infer", f"/v2/models/{MODEL}/infer", "scorer", ""),
]


def _samples(registry: CollectorRegistry, name: str, label: str, **only: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value
        for metric in registry.collect()
        if metric.name == name
        for s in metric.samples
        if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in only.items())
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _half_send(url: str, path: str, token: str, headers: str) -> None:
    """Declare 1000 bytes, send five, and close the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\n{headers}Content-Length: 1000\r\n\r\n"
                '{"a":'
            ).encode()
        )


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at debug and above, uvicorn's own (it does not propagate) included."""
    caplog.set_level(logging.DEBUG)
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn.removeHandler(caplog.handler)


@pytest.mark.parametrize(
    ("template", "path", "role", "headers"),
    CASES,
    ids=[f"{t}{' gzip' if h else ''}" for t, _, _, h in CASES],
)
def test_a_body_cut_short_by_the_client_is_counted_499_and_not_logged_as_an_error(
    running: Running,
    all_logs: pytest.LogCaptureFixture,
    template: str,
    path: str,
    role: str,
    headers: str,
) -> None:
    registry = running.daemon.metrics.registry
    answered = _samples(registry, "tunewatch_http_requests", "status", route=template)
    errors = _samples(registry, "tunewatch_http_errors", "code")
    _half_send(running.url, path, running.tokens[role], headers)
    deadline = time.monotonic() + 10
    while True:  # the request is counted once the daemon has finished with it
        counted = _delta(
            _samples(registry, "tunewatch_http_requests", "status", route=template), answered
        )
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert counted == {"499": 1.0}
    assert _delta(_samples(registry, "tunewatch_http_errors", "code"), errors) == {}
    loud = [f"{r.name}: {r.getMessage()}" for r in all_logs.records if r.levelno >= logging.ERROR]
    assert loud == []
    quiet = [r for r in all_logs.records if "before sending its whole body" in r.getMessage()]
    assert [r.levelno for r in quiet] == [logging.DEBUG]
    assert httpx.get(f"{running.url}/healthz", timeout=10).status_code == 200
