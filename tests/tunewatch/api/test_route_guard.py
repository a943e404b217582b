"""Deny by default: every route of the daemon's app refuses a caller without a token (401,
or for a dashboard page a 303 to the sign-in page) unless it is on ``PUBLIC`` below, and a
``/v1`` route that declares no permission is refused when it is built, not served open.

``require(...)`` was a convention: a GET route that forgot it answered anyone, and a POST
one any token of any role; the route-role tests list routes by hand, so a new route was
never checked."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import FastAPIError
from fastapi.routing import APIRoute, iter_route_contexts

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._background import BackgroundServer
from tunewatch.api._front import _ROUTES as INFERENCE_ROUTES
from tunewatch.api._models import require
from tunewatch.api._route import ApiRoute

LOGIN = "/dashboard/login"

#: Every route anyone may call without a token, and why. A route missing here must refuse
#: a caller without one.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe (lists model names only)",
    ("GET", "/metrics"): "Prometheus scrape",
    ("GET", "/openapi.json"): "the API's own description",
    ("GET", "/v2"): "Open Inference Protocol server metadata",
    ("GET", "/v2/health/live"): "OIP liveness",
    ("GET", "/v2/health/ready"): "OIP readiness",
    ("GET", "/v2/models/{model}/ready"): "OIP model readiness",
    ("GET", "/v2/models/{model}/versions/{version}/ready"): "OIP version readiness",
    ("GET", LOGIN): "the sign-in form",
    ("GET", "/dashboard"): "a redirect to the overview, which is guarded; it reads nothing",
    ("POST", LOGIN): "signing in (the posted token is checked)",
    ("POST", "/dashboard/logout"): "signing out (clears the cookie)",
    ("GET", "/dashboard/models/{model}"): "a redirect to the model's A/B page, which is "
    "guarded; it reads nothing",
}

#: A value for each path parameter: the model and versions exist, the ids need not (a
#: guarded route refuses before it looks anything up).
FILL = {"model": MODEL, "version": "1", "challenger": "2"}


def _routes(running: Running) -> set[tuple[str, str]]:
    """(method, path template) of every route: the FastAPI app's (those of included
    routers, the dashboard's among them) and the inference front's, which never reach
    FastAPI. HEAD answers as GET does."""
    found = {
        (method, context.path)
        for context in iter_route_contexts(running.daemon.app.app.routes)
        for method in context.methods or ()
        if method != "HEAD"
    }
    found.update(("POST", path) for path in INFERENCE_ROUTES)
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: FILL.get(m.group(1), "1"), path)


def _refuses(method: str, path: str, r: httpx.Response) -> bool:
    if path.startswith("/dashboard/"):  # a page sends a browser to sign in
        return r.status_code == 303 and r.headers.get("location") == LOGIN
    return r.status_code == 401


def test_every_route_refuses_a_caller_without_a_token_unless_it_is_listed_public(
    running: Running,
) -> None:
    routes = _routes(running)
    assert len(routes) > 60  # the walk found the included routers' routes
    open_routes = []
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for method, path in sorted(routes - PUBLIC.keys()):
            r = client.request(method, _url(path), json={} if method != "GET" else None)
            if not _refuses(method, path, r):
                location = r.headers.get("location", "")
                open_routes.append(f"{method} {path}: {r.status_code} {location}".rstrip())
    assert open_routes == [], "routes that answer a caller without a token:\n" + "\n".join(
        open_routes
    )


def test_the_public_list_names_only_routes_the_app_has(running: Running) -> None:
    assert PUBLIC.keys() - _routes(running) == set()


def test_every_api_route_is_built_by_the_route_class_that_refuses_an_unguarded_one(
    running: Running,
) -> None:
    """The daemon's own FastAPI routes (``/healthz`` … and every ``/v1`` router's) go
    through :class:`ApiRoute`; the dashboard's are guarded by its session instead (and
    walked above)."""
    plain = sorted(
        f"{sorted(context.methods or ())} {context.path}"
        for context in iter_route_contexts(running.daemon.app.app.routes)
        if isinstance(context.original_route, APIRoute)
        and not isinstance(context.original_route, ApiRoute)
        and not context.endpoint.__module__.startswith("tunewatch.dashboard.")
    )
    assert plain == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_route_declaring_no_permission_is_refused_when_the_app_is_built(method: str) -> None:
    with pytest.raises(FastAPIError) as info:
        router = APIRouter(prefix="/v1", route_class=ApiRoute)

        @router.api_route("/forgotten", methods=[method])
        def forgotten() -> dict[str, bool]:
            return {"secret": True}

        FastAPI().include_router(router)
    message = str(info.value)
    assert f"route {method} /v1/forgotten declares no permission" in message
    assert "require(" in message and "Depends(public)" in message


def test_a_route_both_public_and_requiring_a_permission_is_refused() -> None:
    from tunewatch.api._route import public

    router = APIRouter(prefix="/v1", route_class=ApiRoute)
    with pytest.raises(FastAPIError, match="both public and require"):

        @router.get("/confused", dependencies=[Depends(public), Depends(require("read"))])
        def confused() -> dict[str, bool]:
            return {"confused": True}


def test_a_route_marked_public_answers_without_a_token() -> None:
    from tunewatch.api._route import public

    router = APIRouter(route_class=ApiRoute)

    @router.get("/probe", dependencies=[Depends(public)])
    def probe() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/echo", dependencies=[Depends(public)])
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    app = FastAPI()
    app.include_router(router)
    with BackgroundServer(app) as server:
        assert httpx.get(f"{server.url}/probe").json() == {"status": "ok"}
        r = httpx.post(f"{server.url}/echo", content=b'{"a": 1}')
        assert (r.status_code, r.json()) == (200, {"a": 1})
