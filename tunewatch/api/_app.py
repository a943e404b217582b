"""The FastAPI application: routes, error handlers, body limits and HTTP metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import orjson
from fastapi import Depends, FastAPI
from fastapi.routing import iter_route_contexts
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor import CONTENT_TYPE_LATEST, ServingMetrics
from tunewatch import __version__
from tunewatch.api import _alerts, _oip, _records
from tunewatch.api._alert_ignores import count_from_zero
from tunewatch.api._body import BodyLimitMiddleware
from tunewatch.api._comparisons import router as comparisons_router
from tunewatch.api._context import AppContext, context
from tunewatch.api._errors import CLIENT_CLOSED, install_error_handlers
from tunewatch.api._evaluations import router as evaluations_router
from tunewatch.api._front import InferenceFront
from tunewatch.api._jobs import router as jobs_router
from tunewatch.api._log import router as log_router
from tunewatch.api._models import router as models_router
from tunewatch.api._openapi import openapi_of
from tunewatch.api._route import ApiRoute, public
from tunewatch.api._tags import router as tags_router

logger = logging.getLogger(__name__)


def _template_of(scope: Scope) -> str:
    """The template of the app's route ``scope``'s path and method match, for an answer
    given before the router ran (a body past ``server.max_body_bytes``, 413: counted as
    ``unmatched``, so a delivery too large for the Alertmanager webhook was invisible to
    ``TunewatchAlertWebhookRefused``); ``unmatched`` when none does (a 404).

    Each route is matched as FastAPI's router sees it (:func:`iter_route_contexts`): an
    included router's routes are held in one ``_IncludedRouter`` entry with no ``path``,
    and matching those raised ``AttributeError`` for every ``/v1`` router's and the
    dashboard's routes."""
    app = scope.get("app")
    for route in iter_route_contexts(getattr(getattr(app, "router", None), "routes", ())):
        match, _ = route.matches(dict(scope))  # matching writes to the scope it is given
        if match == Match.FULL:
            return str(route.path)
    return "unmatched"


class HttpMetricsMiddleware:
    """Counts answers by route template and status (bounded labels: never raw paths).

    A request whose client closed the connection before sending its whole body is
    answered nothing and counted under :data:`CLIENT_CLOSED` (499), not as an error."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServingMetrics, templates: dict[object, str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates  # plain Starlette routes: endpoint -> path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        json_answer = False
        started = closed = False

        async def capture(message: Message) -> None:
            nonlocal status, json_answer, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                json_answer = (b"content-type", b"application/json") in message.get("headers", [])
            elif status >= 400 and json_answer and message["type"] == "http.response.body":
                self._count_error(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except ClientDisconnect:
            # The client went away before sending its whole body (a route's `await
            # request.body()`): nothing to answer, and no error of ours, as on the
            # inference front. Re-raised, it was answered 500 `internal` with a traceback.
            logger.debug(
                "%s %s: the client closed the connection before sending its whole body",
                scope["method"],
                scope["path"],
            )
            closed = True
        finally:
            route = scope.get("route")
            template = (
                getattr(route, "path", None)
                or self.templates.get(scope.get("endpoint"))
                or _template_of(scope)
            )
            answered = CLIENT_CLOSED if closed else status
            self.metrics.http_requests.labels(template, str(answered)).inc()
            if not (started or closed):  # an unhandled error: 500 `internal` outside this
                self.metrics.http_errors.labels("internal").inc()

    def _count_error(self, body: bytes) -> None:
        """Count an API error answer by its ``code`` (every one is ``{"error", "code"}``;
        the dashboard's HTML error pages are not API errors)."""
        try:
            code = orjson.loads(body).get("code")
        except (orjson.JSONDecodeError, AttributeError):
            code = None
        self.metrics.http_errors.labels(code if isinstance(code, str) else "unknown").inc()


class HeadAsGetMiddleware:
    """Answers HEAD wherever GET is answered, as GET would without the body (RFC 9110
    §9.1: a general-purpose server must support both; §9.3.2: the same header fields).

    FastAPI routes take only the methods they declare, so ``HEAD /healthz`` was a 405
    and a load balancer probing with HEAD saw the daemon down. A HEAD request runs as
    GET (the same route, the same authentication, a GET route's lack of side effects)
    and its answer is passed on with its status and headers, ``Content-Length`` among
    them, and an empty body. A path that takes no GET answers HEAD 405 as it answers
    GET; every 405 whose ``Allow`` names GET names HEAD after it, since HEAD is taken
    there. The inference routes never reach this app (:class:`InferenceFront`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "HEAD":
            await self.app({**scope, "method": "GET"}, receive, _bodiless(send))
        else:
            await self.app(scope, receive, _allowing_head(send))


def _bodiless(send: Send) -> Send:
    """``send`` passing on the answer's start and one empty body for its last part."""

    async def head(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(_allowing_head_in(message))
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return head


def _allowing_head(send: Send) -> Send:
    async def allowing(message: Message) -> None:
        await send(_allowing_head_in(message))

    return allowing


def _allowing_head_in(message: Message) -> Message:
    """A 405's start with HEAD added after GET in ``Allow``; any other message as is."""
    if message["type"] != "http.response.start" or message["status"] != 405:
        return message
    headers = []
    for name, value in message.get("headers", []):
        if name.lower() == b"allow":
            methods = [m.strip() for m in value.split(b",")]
            if b"GET" in methods and b"HEAD" not in methods:
                methods.insert(methods.index(b"GET") + 1, b"HEAD")
                value = b", ".join(methods)
        headers.append((name, value))
    return {**message, "headers": headers}


def _templates(routes: Iterable[Route]) -> dict[object, str]:
    """Plain Starlette routes' path templates by endpoint: the router sets no
    ``scope["route"]`` for them, only the endpoint, so a handler serving two paths would
    count one's answers under the other's template."""
    templates: dict[object, str] = {}
    for route in routes:
        known = templates.setdefault(route.endpoint, route.path)
        if known != route.path:
            raise ValueError(
                f"routes {known!r} and {route.path!r} share the endpoint "
                f"{getattr(route.endpoint, '__qualname__', route.endpoint)!r}; the HTTP "
                "metrics name a route by its endpoint, so each route needs its own"
            )
    return templates


async def readyz(request: Request) -> Response:
    """Readiness: the store takes the daemon's records (:func:`_oip.check_ready`).

    A plain Starlette route, as the OIP probes are: FastAPI runs a route's sync
    dependencies (:func:`public` is one) in a worker thread of anyio's default pool, so
    even an async ``/readyz`` waited behind a full pool (16 s during a label backfill,
    past a readiness probe's 1 s). Its store check runs in the probes' own threads."""
    _oip.refuse_while_stopping(request)
    ctx = context(request)
    await _oip.check_ready(ctx)
    return JSONResponse({"status": "ok", "models": [m.row.name for m in ctx.runtime.models()]})


async def healthz(request: Request) -> Response:
    """Liveness: the event loop answers. A plain Starlette route, as ``/readyz``: behind a
    full worker-thread pool a liveness probe's timeout restarts the daemon."""
    return JSONResponse({"status": "ok"})


_probe_routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]


def _description_route() -> Route:
    """``/openapi.json``, the API's description for any OpenAPI viewer or generator: a
    plain route, as FastAPI's own was, sent with the dashboard's Content-Security-Policy
    (no script, no framing) and ``nosniff``, so no browser reads it as a page."""
    # imported here: the dashboard imports tunewatch.api
    from tunewatch.dashboard._html import CSP

    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(request.app.openapi(), headers=headers)

    return Route("/openapi.json", openapi_json, methods=["GET"])


def create_app(
    ctx: AppContext,
    *,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    stopping: threading.Event | None = None,
) -> FastAPI:
    """The app; ``stopping``, once set, has readiness answered 503 ``shutting_down``
    (:func:`_oip.refuse_while_stopping`): ``tunewatch serve`` sets it at SIGTERM/SIGINT."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()

    # No slash redirects: a path with a trailing slash is an unknown one, 404 like any
    # other. Starlette answered it 307 with an empty body and a Location built from the
    # client's Host header, before any token or model was checked. No Swagger UI
    # (`/docs`): it ran a CDN's unpinned script, without the dashboard's CSP, in the
    # dashboard's origin; the description is served below (`/openapi.json`).
    app = FastAPI(
        title="tunewatch",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    app.state.stopping = threading.Event() if stopping is None else stopping
    app.router.route_class = ApiRoute  # the app's own routes declare who may call them too
    install_error_handlers(app)
    plain_routes = (*_probe_routes, _description_route(), *_oip.routes, *_records.routes)
    for route in (*plain_routes, *_alerts.routes):
        app.router.routes.append(route)
    count_from_zero(ctx.runtime.metrics, _alerts.routes[0].path)
    app.include_router(models_router)
    app.include_router(log_router)
    app.include_router(evaluations_router)
    app.include_router(jobs_router)
    app.include_router(comparisons_router)
    app.include_router(tags_router)
    # imported here: the dashboard reads the API's context, so it imports tunewatch.api
    from tunewatch.dashboard import router as dashboard_router
    from tunewatch.dashboard._auth import MAX_FORM_BYTES

    app.include_router(dashboard_router)

    # The dashboard's address as the README and the demo give it, without the slash its
    # overview's path ends in: sent there by a path alone, not by the client's Host.
    @app.get("/dashboard", include_in_schema=False, dependencies=[Depends(public)])
    def dashboard_root() -> Response:
        return RedirectResponse("/dashboard/", status_code=307)

    # documented as the text it is (`response_class`), not FastAPI's default JSON
    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(public)])
    def metrics(request: Request) -> Response:
        return Response(
            context(request).runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST
        )

    app.openapi = openapi_of(app)  # type: ignore[method-assign]
    server = ctx.runtime.config.server
    app.add_middleware(
        BodyLimitMiddleware,
        limit=server.max_body_bytes,
        artefact_limit=server.max_artefact_bytes,
        form_limit=MAX_FORM_BYTES,
    )
    templates = _templates((*plain_routes, *_alerts.routes))
    app.add_middleware(HttpMetricsMiddleware, metrics=ctx.runtime.metrics, templates=templates)
    app.add_middleware(HeadAsGetMiddleware)  # outermost: the metrics see the error bodies
    return app


def create_asgi(
    ctx: AppContext,
    *,
    stopping: threading.Event | None = None,
    **lifecycle: Callable[[], None] | None,
) -> InferenceFront:
    """The daemon's ASGI application: the inference front before the FastAPI app; with
    authentication off, one answering this machine's own clients only
    (:mod:`tunewatch.api._local_origin`)."""
    app = create_app(ctx, stopping=stopping, **lifecycle)
    front = InferenceFront
    if ctx.auth.disabled:
        # imported here: it reads the dashboard's same-origin check and this module's
        # route templates (`_template_of`)
        from tunewatch.api._local_origin import LocalOnlyFront

        front = LocalOnlyFront
    return front(app, ctx=ctx, max_body_bytes=ctx.runtime.config.server.max_body_bytes)
