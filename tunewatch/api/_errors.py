"""Errors on the wire: always ``{"error": message, "code": code}``, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import Scope

from shadow import ShadowError
from tunewatch._auth import AuthError, Principal
from tunewatch._errors import (
    ConflictError,
    DatabaseUnavailableError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    TunewatchError,
)

logger = logging.getLogger(__name__)


class ApiError(TunewatchError):
    """An error raised by the HTTP layer itself, with its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


# The status a request is counted under when its client closed the connection before
# sending its whole body: nothing is answered, so no status was sent; nginx's "client
# closed request", apart from the 5xx of the daemon's own failures.
CLIENT_CLOSED = 499

# Shadow (input validation, loading) codes and the status each answers with.
SHADOW_STATUS = {
    "batch_too_large": 413,
    "insufficient_memory": 503,
    "run_timeout": 503,
    "version_not_loaded": 404,
}
# Store / registry codes that do not follow their class's default status.
CODE_STATUS = {
    "model_not_ready": 503,
    "report_unavailable": 422,
    "report_busy": 429,
    "window_purged": 410,
}


class ErrorBody(BaseModel):
    """The body of every error answer, as :func:`error_response` writes it: the schema
    ``/openapi.json`` documents for each 4xx and 5xx."""

    error: str = Field(description="what went wrong, for a person to read")
    code: str = Field(
        description="a stable code for a program to branch on: `invalid_request`, "
        "`unauthenticated`, `invalid_token`, `forbidden`, `model_not_found`, …"
    )


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def status_for(exc: TunewatchError) -> int:
    if exc.code in CODE_STATUS:
        return CODE_STATUS[exc.code]
    if isinstance(exc, ApiError | AuthError):
        return exc.status
    if isinstance(exc, StoreUnavailableError):
        return 503
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ValueError):
        return 400
    return 500


# The answer to a store that cannot be reached or cannot commit. Its error's message
# carries the driver's text (the database's host, port and user): that is for the
# daemon's log, where the store logs it, and the CLI, not for any caller (during an
# outage the token lookup fails too, so a made-up token was answered with it).
STORE_UNAVAILABLE_MESSAGE = "the store is unavailable; retry later"

# The answer to a store failure that is no outage (a bug, a damaged artefact): its message
# holds the database's SQL or a server path, logged with its traceback (``_own_error``).
STORE_ERROR_MESSAGE = "the store failed; the daemon's log has the reason"


def describe(exc: TunewatchError | ShadowError) -> tuple[int, str, str]:
    """``(status, code, message)`` for one of our own errors, as a caller is answered."""
    if isinstance(exc, ShadowError):
        status = SHADOW_STATUS.get(exc.code, 400 if isinstance(exc, ValueError) else 422)
        return status, exc.code, exc.message
    if isinstance(exc, DatabaseUnavailableError):
        return status_for(exc), exc.code, STORE_UNAVAILABLE_MESSAGE
    status = status_for(exc)
    if exc.code == StoreError.code and status == 500:
        return status, exc.code, STORE_ERROR_MESSAGE
    return status, exc.code, exc.message


#: The attribute under which a route's endpoint may carry what to do when its caller's
#: role is refused (403): called in a worker thread with the request, the caller and the
#: refusal's message before the 403 is answered. The governance routes audit the attempt
#: (:mod:`tunewatch.api._models`); other routes' 403s, scoring's above all, are only
#: counted (``http_errors_total``): audited, a misconfigured client would flood the log.
ON_FORBIDDEN = "on_forbidden"

ForbiddenHook = Callable[[Request, Principal, str], None]


async def _on_forbidden(request: Request, exc: AuthError) -> None:
    """Run the refused route's :data:`ON_FORBIDDEN` hook, if it has one (the route is in
    the request's scope once it matched)."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    hook: ForbiddenHook | None = getattr(endpoint, ON_FORBIDDEN, None)
    if hook is not None and exc.principal is not None:
        await anyio.to_thread.run_sync(hook, request, exc.principal, exc.message)


async def _own_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TunewatchError | ShadowError)
    if isinstance(exc, AuthError) and exc.status == 403:
        await _on_forbidden(request, exc)
    status, code, message = describe(exc)
    if status >= 500 and status != 503:
        logger.error(
            "request %s %s failed: %s", request.method, request.url.path, exc, exc_info=exc
        )
    return error_response(status, code, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg')}")
    return error_response(400, "invalid_request", "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    response = error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )
    response.headers.update(exc.headers or {})  # a 405's Allow, a 401's WWW-Authenticate
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


# The methods a 405's Allow may name.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app takes at the request's path. Starlette's 405
    names those of the first route matching the path only, and two routes may share a
    path (``GET`` and ``POST /v1/models/{model}/versions``): each method is matched
    against every route, with a scope of its own (matching writes to the scope)."""
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        probe: Scope = {
            "type": "http",
            "method": method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "headers": [],
            "query_string": b"",
        }
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; see the daemon's log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TunewatchError, _own_error)
    app.add_exception_handler(ShadowError, _own_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
