"""HTTP metrics and the app's schema: error answers counted by code (API errors by their
``code``, an unhandled error as ``internal`` answered outside the metrics middleware, HTML
pages not at all), answers by the template of the route that matched, and every route
in the OpenAPI schema."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Running
from tunewatch.api import _alerts, _oip, _records
from tunewatch.api._app import HttpMetricsMiddleware, _templates


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


def test_answers_are_counted_by_the_template_of_the_route_that_matched(
    running: Running,
) -> None:
    """A model's metadata and readiness share their handlers with a version's, and were
    counted under the version's templates: a handler named one template."""
    registry = running.daemon.metrics.registry

    def count(route: str) -> float:
        value = registry.get_sample_value(
            "tunewatch_http_requests_total", {"route": route, "status": "200"}
        )
        return value or 0.0

    templates = {
        f"/v2/models/{MODEL}": "/v2/models/{model}",
        f"/v2/models/{MODEL}/ready": "/v2/models/{model}/ready",
        f"/v2/models/{MODEL}/versions/1": "/v2/models/{model}/versions/{version}",
        f"/v2/models/{MODEL}/versions/1/ready": "/v2/models/{model}/versions/{version}/ready",
    }
    before = {template: count(template) for template in templates.values()}
    for path in templates:
        r = httpx.get(f"{running.url}{path}", headers=running.auth("scorer"))
        assert r.status_code == 200, r.text
    assert {t: count(t) - before[t] for t in templates.values()} == dict.fromkeys(
        templates.values(), 1.0
    )


def test_a_handler_shared_by_two_plain_routes_is_refused_when_the_app_is_built() -> None:
    async def shared(scope: Any, receive: Any, send: Any) -> None:
        pass

    routes = [Route("/a/{x}", shared), Route("/a/{x}/b/{y}", shared)]
    with pytest.raises(ValueError, match=r"routes '/a/\{x\}' and '/a/\{x\}/b/\{y\}' share"):
        _templates(routes)
    app_routes = (*_oip.routes, *_records.routes, *_alerts.routes)
    assert sorted(_templates(app_routes).values()) == sorted(r.path for r in app_routes)


def test_the_alertmanager_webhook_is_in_the_openapi_schema(running: Running) -> None:
    paths = httpx.get(f"{running.url}/openapi.json").json()["paths"]
    post = paths["/v1/alerts/alertmanager"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
    assert set(post["responses"]) == {"200", "400", "401", "403", "413", "415", "503"}


def _counted(running: Running, route: str, status: str) -> Callable[[], dict[str, float]]:
    """How many answers of ``status`` were counted under ``route`` and under `unmatched`
    since this call, when the returned function is called."""
    registry = running.daemon.metrics.registry

    def count(template: str) -> float:
        value = registry.get_sample_value(
            "tunewatch_http_requests_total", {"route": template, "status": status}
        )
        return value or 0.0

    before = {route: count(route), "unmatched": count("unmatched")}
    return lambda: {k: count(k) - v for k, v in before.items()}


def test_a_compressed_request_is_counted_under_its_route_template(running: Running) -> None:
    """The body limit handed the app a copy of the scope for a gzip body: the router
    recorded the matched route in the copy, and the answer was counted as `unmatched`."""
    route = "/v1/models/{model}/feedback"
    counted = _counted(running, route, "200")
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/feedback",
        content=gzip.compress(b'{"items": [{"request_id": "nosuch", "label": 1}]}'),
        headers={**running.auth("labeller"), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert counted() == {route: 1.0, "unmatched": 0.0}


def test_a_body_refused_before_routing_is_counted_under_its_route_template(
    running: Running,
) -> None:
    """A body past ``server.max_body_bytes`` is answered 413 before the router runs: it
    was counted as `unmatched`, so an Alertmanager delivery too large for the webhook was
    invisible to ``TunewatchAlertWebhookRefused``, which reads the webhook's route."""
    route = "/v1/alerts/alertmanager"
    counted = _counted(running, route, "413")
    r = httpx.post(
        f"{running.url}{route}",
        content=b'{"alerts": "' + b"x" * 70_000 + b'"}',
        headers={**running.auth("alertmanager"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert counted() == {route: 1.0, "unmatched": 0.0}


def test_the_openapi_schema_declares_every_path_parameter_with_standard_bounds(
    running: Running,
) -> None:
    """Schemathesis refused the hand-described routes (InvalidSchema: "Path parameter
    'model' is not defined": 8 routes untested), and 37 integer bounds came out as
    pydantic's `ge`/`le`, not JSON Schema's `minimum`/`maximum`, so `limit=0` read as
    valid and was answered 400."""
    spec = httpx.get(f"{running.url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        named = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert named <= declared, (method, path, named - declared)
            for p in params:
                schemas = [p["schema"], *p["schema"].get("anyOf", [])]
                for s in schemas:
                    assert not {"ge", "le", "gt", "lt"} & set(s), (method, path, p["name"], s)
