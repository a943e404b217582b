"""Error answers counted by code: API errors by their ``code``, an unhandled error as
``internal`` (answered outside the metrics middleware), HTML pages not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import HTMLResponse, JSONResponse

from monitor import ServingMetrics
from tunewatch.api._app import HttpMetricsMiddleware


def _call(app: Any, metrics: ServingMetrics) -> None:
    middleware = HttpMetricsMiddleware(app, metrics=metrics, templates={})
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(middleware(scope, receive, send))


def _errors(metrics: ServingMetrics) -> dict[str, float]:
    return {
        s.labels["code"]: s.value
        for m in metrics.http_errors.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }


def test_error_answers_are_counted_by_code() -> None:
    metrics = ServingMetrics()
    _call(JSONResponse({"error": "no", "code": "forbidden"}, status_code=403), metrics)
    _call(HTMLResponse("<p>no such page</p>", status_code=404), metrics)  # a dashboard page

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        _call(broken, metrics)
    assert _errors(metrics) == {"forbidden": 1.0, "internal": 1.0}
