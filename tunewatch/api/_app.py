"""The FastAPI application: routes, error handlers, body limits and HTTP metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor import CONTENT_TYPE_LATEST, ServingMetrics
from tunewatch import __version__
from tunewatch.api import _alerts, _oip, _records
from tunewatch.api._alert_ignores import count_from_zero
from tunewatch.api._body import BodyLimitMiddleware
from tunewatch.api._comparisons import router as comparisons_router
from tunewatch.api._context import AppContext, context
from tunewatch.api._errors import CLIENT_CLOSED, ErrorBody, install_error_handlers
from tunewatch.api._evaluations import router as evaluations_router
from tunewatch.api._feedback_limit import BUSY_RESPONSES as FEEDBACK_BUSY
from tunewatch.api._front import OPEN_PATHS, InferenceFront
from tunewatch.api._jobs import router as jobs_router
from tunewatch.api._mirror_limit import BUSY_RESPONSES as MIRROR_BUSY
from tunewatch.api._models import router as models_router
from tunewatch.api._route import ApiRoute, public

logger = logging.getLogger(__name__)


def _template_of(scope: Scope) -> str:
    """The template of the app's route ``scope``'s path and method match, for an answer
    given before the router ran (a body past ``server.max_body_bytes``, 413: counted as
    ``unmatched``, so a delivery too large for the Alertmanager webhook was invisible to
    ``TunewatchAlertWebhookRefused``); ``unmatched`` when none does (a 404)."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
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


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_BEARER = "bearer"
# What a route that takes a token may answer besides its own errors, by status.
_TOKEN_ERRORS = {
    "400": "`invalid_request` (a parameter or the body is not what the route takes) or "
    "another refusal of the request as sent",
    "401": "`unauthenticated` (no `Authorization: Bearer` token) or `invalid_token` (not "
    "known, or revoked)",
    "403": "`forbidden`: the token's role may not do this",
    "503": "`store_unavailable`: the store cannot be reached (the token is looked up there "
    "too); retry later",
}
_NOT_FOUND = "a model, version or id in the path that is not known (`model_not_found`, …)"
_TOO_LARGE = "`body_too_large`: the body exceeds `server.max_body_bytes` (or the artefact limit)"


def _document_errors_and_tokens(schema: dict[str, Any]) -> None:
    """Make ``schema`` say what the routes answer. FastAPI documents a 422
    ``{"detail": [...]}`` on every route taking parameters, which is never answered (an
    invalid request is 400 ``invalid_request``, :mod:`tunewatch.api._errors`), and
    neither errors nor tokens. So here: that 422 is dropped; every 4xx or 5xx is
    documented as :class:`ErrorBody`; and each operation not among the routes that read
    no token (the front's list: the probes, the scrape, the OIP health routes) asks for
    the bearer token and documents the errors any such route may answer."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    components["securitySchemes"] = {
        _BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "an API token (`tunewatch tokens create`); its role decides "
            "what it may do",
        }
    }
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = op["responses"]
            default_422 = responses.get("422", {}).get("content", {}).get("application/json")
            if default_422 == {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}:
                del responses["422"]
            if not OPEN_PATHS.match(path):
                op["security"] = [{_BEARER: []}]
                for status, description in _TOKEN_ERRORS.items():
                    responses.setdefault(status, {"description": description})
                if "{" in path:
                    responses.setdefault("404", {"description": _NOT_FOUND})
                if method not in ("get", "head", "options"):
                    responses.setdefault("413", {"description": _TOO_LARGE})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    body = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    response.setdefault("content", {"application/json": body})
            op["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):  # referenced by that 422 only
        if f'"#/components/schemas/{name}"'.encode() not in orjson.dumps(schema):
            schemas.pop(name, None)


def _openapi_oip(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the hand-described Starlette routes (OIP, mirror, feedback,
    the Alertmanager webhook), with every route's errors and token documented
    (:func:`_document_errors_and_tokens`)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        err = {"description": '`{"error": str, "code": str}`'}
        described = {
            "/v2/models/{model}/infer": "Open Inference Protocol v2 inference (JSON or binary "
            "tensor extension). Scored by the champion, recorded durably, shadowed.",
            "/v2/models/{model}/versions/{version}/infer": "Inference by one named version.",
            "/v1/models/{model}/records": 'Mirror: `{"records": [{"id", "inputs", '
            '"outputs", "version"?}]}` scored by the serving stack; recorded and shadowed.',
            "/v1/models/{model}/feedback": 'Labels: `{"items": [{"request_id", "label", '
            '"outcome"?}]}`; idempotent per request id.',
        }
        for path, summary in described.items():
            schema["paths"][path] = {
                "post": {
                    "summary": summary,
                    "responses": {
                        "200": {"description": "OK"},
                        "400": err,
                        "401": err,
                        "403": err,
                        "404": err,
                        "409": err,
                        "413": err,
                        "503": err,
                    },
                }
            }
        feedback = schema["paths"][_records.FEEDBACK_PATH]["post"]["responses"]
        feedback["429"] = {**FEEDBACK_BUSY[429]}  # a copy: the errors' body is added to it
        mirror = schema["paths"][_records.MIRROR_PATH]["post"]["responses"]
        mirror["429"] = {**MIRROR_BUSY[429]}
        schema["paths"]["/v1/alerts/alertmanager"] = {
            "post": {
                "summary": "Alertmanager webhook (payload version 4; the alertmanager role): "
                "each firing alert naming a known model in the `alerting.model_label` label "
                "is one episode (`fingerprint` + `startsAt`) acted on once, whatever the "
                "redelivery. Alerts it cannot act on are ignored and listed, not refused.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["alerts"],
                                "properties": {
                                    "alerts": {"type": "array", "items": {"type": "object"}}
                                },
                                "additionalProperties": True,
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": '`{"received": int, "new_episodes": int, "jobs": '
                        '[job id], "ignored": [str], "busy": []}`'
                    },
                    "400": err,
                    "401": err,
                    "403": err,
                    "413": err,
                    "415": err,
                    "503": {
                        "description": '`{"error": str, "code": str}`: `alert_busy` (an '
                        "episode is held by another delivery that has not decided it; "
                        "Alertmanager's retry takes it once the claim times out), "
                        "`webhook_busy` (4 deliveries are being decided and 16 wait in this "
                        "daemon; `Retry-After`) or `store_unavailable`"
                    },
                },
            }
        }
        schema["paths"]["/healthz"] = {
            "get": {
                "summary": "Liveness: the daemon's event loop answers",
                "responses": {
                    "200": {
                        "description": '`{"status": "ok"}`',
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
        schema["paths"]["/readyz"] = {
            "get": {
                "summary": "Readiness: the store takes the daemon's records",
                "responses": {
                    "200": {
                        "description": '`{"status": "ok", "models": [model name]}`',
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {"description": "`store_unavailable`"},
                },
            }
        }
        for path in (
            "/v2",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/{model}",
            "/v2/models/{model}/ready",
            "/v2/models/{model}/versions/{version}",
            "/v2/models/{model}/versions/{version}/ready",
        ):
            schema["paths"][path] = {
                "get": {
                    "summary": "Open Inference Protocol v2",
                    "responses": {"200": {"description": "OK"}},
                }
            }
        _standard_parameters(schema)
        _document_errors_and_tokens(schema)
        app.openapi_schema = schema
        return schema

    return openapi


#: pydantic's bounds of a parameter validated before its type (``BeforeValidator``), as
#: FastAPI emits them, and their JSON Schema keywords.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard_parameters(schema: dict[str, Any]) -> None:
    """Every ``{name}`` of a path declared as its path parameter (the hand-described
    routes declared none: schema validators refused them, and Schemathesis tested none
    of the 8), and parameter bounds in JSON Schema's keywords (37 came out as pydantic's
    ``ge``/``le``, which clients and validators ignore)."""
    for path, operations in schema["paths"].items():
        named = re.findall(r"\{(\w+)\}", path)
        for operation in operations.values():
            params = operation.setdefault("parameters", [])
            declared = {p["name"] for p in params if p.get("in") == "path"}
            for name in named:
                if name not in declared:
                    kind = "integer" if name == "version" else "string"
                    params.append(
                        {"name": name, "in": "path", "required": True, "schema": {"type": kind}}
                    )
            for param in params:
                top = param.get("schema", {})
                for part in (top, *top.get("anyOf", ())):
                    for ours, standard in _BOUNDS.items():
                        if ours in part:
                            part[standard] = part.pop(ours)
            if not params:
                del operation["parameters"]


async def readyz(request: Request) -> Response:
    """Readiness: the store takes the daemon's records (:func:`_oip.check_ready`).

    A plain Starlette route, as the OIP probes are: FastAPI runs a route's sync
    dependencies (:func:`public` is one) in a worker thread of anyio's default pool, so
    even an async ``/readyz`` waited behind a full pool (16 s during a label backfill,
    past a readiness probe's 1 s). Its store check runs in the probes' own threads."""
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


def create_app(
    ctx: AppContext,
    *,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()

    app = FastAPI(
        title="tunewatch", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None
    )
    app.state.ctx = ctx
    app.router.route_class = ApiRoute  # the app's own routes declare who may call them too
    install_error_handlers(app)
    for route in (*_probe_routes, *_oip.routes, *_records.routes, *_alerts.routes):
        app.router.routes.append(route)
    count_from_zero(ctx.runtime.metrics, _alerts.routes[0].path)
    app.include_router(models_router)
    app.include_router(evaluations_router)
    app.include_router(jobs_router)
    app.include_router(comparisons_router)
    # imported here: the dashboard reads the API's context, so it imports tunewatch.api
    from tunewatch.dashboard import router as dashboard_router
    from tunewatch.dashboard._auth import MAX_FORM_BYTES

    app.include_router(dashboard_router)

    @app.get("/metrics", include_in_schema=True, dependencies=[Depends(public)])
    def metrics(request: Request) -> Response:
        return Response(
            context(request).runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST
        )

    app.openapi = _openapi_oip(app)  # type: ignore[method-assign]
    server = ctx.runtime.config.server
    app.add_middleware(
        BodyLimitMiddleware,
        limit=server.max_body_bytes,
        artefact_limit=server.max_artefact_bytes,
        form_limit=MAX_FORM_BYTES,
    )
    templates = _templates((*_probe_routes, *_oip.routes, *_records.routes, *_alerts.routes))
    app.add_middleware(HttpMetricsMiddleware, metrics=ctx.runtime.metrics, templates=templates)
    app.add_middleware(HeadAsGetMiddleware)  # outermost: the metrics see the error bodies
    return app


def create_asgi(ctx: AppContext, **lifecycle: Callable[[], None] | None) -> InferenceFront:
    """The daemon's ASGI application: the inference front before the FastAPI app."""
    app = create_app(ctx, **lifecycle)
    return InferenceFront(app, ctx=ctx, max_body_bytes=ctx.runtime.config.server.max_body_bytes)
