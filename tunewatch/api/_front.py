"""The hot path's own ASGI front: inference requests never enter FastAPI's stack.

Everything else (lifespan, every other route) passes through to the FastAPI app. The
front keeps the same contract as the rest of the API: the caller's token (and here the
model and a named version) checked before the body is read, body limits before parsing,
``{"error", "code"}`` answers, HTTP metrics by route template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import partial
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from shadow import ShadowError
from tunewatch._errors import TunewatchError
from tunewatch.api._body import BodyTooLargeError, content_coding, content_encoding, inflate
from tunewatch.api._context import AppContext
from tunewatch.api._encoded_path import encoded_slash_refusal
from tunewatch.api._errors import CLIENT_CLOSED, ApiError, describe
from tunewatch.api._lookups import bounded_token_lookup
from tunewatch.api._oip import infer, named_version

logger = logging.getLogger(__name__)

_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_ROUTES = ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer")
_JSON = [(b"content-type", b"application/json")]
# Routes that read no token: probes and scrapes (which may carry one) answer without it.
OPEN_PATHS = re.compile(
    r"^/(?:healthz|readyz|metrics|v2(?:/health/(?:live|ready))?"
    r"|v2/models/[^/]+(?:/versions/[^/]+)?/ready)$"
)


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


class InferenceFront:
    def __init__(self, app: ASGIApp, *, ctx: AppContext, max_body_bytes: int) -> None:
        self.app = app
        self.ctx = ctx
        self.limit = max_body_bytes
        self._counter = ctx.runtime.metrics.http_requests
        self._errors = ctx.runtime.metrics.http_errors
        self._count: dict[tuple[str, int], Any] = {}  # labelled children, looked up once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # before any route, the inference routes' too, reads the decoded path
        refusal = encoded_slash_refusal(scope)
        if refusal is not None:
            await self.refuse(scope, send, "unmatched", refusal)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # the first of repeated headers, as Starlette
            headers.setdefault(name, value)  # (Content-Encoding: every line, in `_body`)
        authorization = _text(headers.get(b"authorization"))
        match = _INFER.match(scope["path"])
        if match is None:
            if not self.ctx.auth.resolved(authorization) and not OPEN_PATHS.match(scope["path"]):
                # A token not in the cache is looked up in a worker thread, so a slow or
                # hung database holds this request only, not the event loop; every check
                # the request makes afterwards reads the cache. At most MAX_TOKEN_LOOKUPS
                # run at once, the next waiting on the loop without a thread, so made-up
                # tokens cannot take the pool every other off-loop piece of work shares.
                # A route that reads no token does not wait on the database for one.
                await bounded_token_lookup(partial(self.ctx.auth.resolve, authorization))
            await self.app(scope, receive, send)
            return
        route = _ROUTES[match.group(2) is not None]
        try:
            if scope["method"] != "POST":
                raise ApiError(405, "method_not_allowed", "inference takes POST")
            # The caller, the model and a named version are checked before the body is
            # read, as on the /v1 routes: a client without a token was invited to send
            # up to max_body_bytes (100 Continue), and the front held all of it before
            # its 401. The caller is checked again once the body is read; `infer` checks
            # the model and the version again, from memory.
            await self._may_score(authorization)
            named_version(self.ctx, self.ctx.runtime.model(match.group(1)), match.group(2))
            body = await self._body(headers, scope["headers"], receive)
            # again: the token may have been revoked, or its cached answer expired (looked
            # up again off the event loop), while the body arrived (a slow upload)
            await self._may_score(authorization)
            payload = await infer(
                self.ctx,
                match.group(1),
                match.group(2),
                _text(headers.get(b"inference-header-content-length")),
                body,
            )
            status = 200
        except (TunewatchError, ShadowError) as exc:
            status, code, message = describe(exc)
            if status >= 500 and status != 503:
                logger.error("inference on %s failed: %s", scope["path"], exc, exc_info=exc)
            payload = _error(code, message)
            self._errors.labels(code).inc()
        except _Disconnected:  # nothing to answer, and no error of ours
            logger.debug(
                "%s %s: the client closed the connection before sending its whole body",
                scope["method"],
                scope["path"],
            )
            status, payload = CLIENT_CLOSED, b""
        except Exception as exc:  # the request boundary: log it, answer without a trace
            logger.error("unhandled error in inference on %s", scope["path"], exc_info=exc)
            status, payload = 500, _error("internal", "internal error; see the daemon's log")
            self._errors.labels("internal").inc()
        key = (route, status)
        child = self._count.get(key)
        if child is None:
            child = self._count[key] = self._counter.labels(route, str(status))
        child.inc()
        if status == CLIENT_CLOSED:
            return
        answer = [*_JSON, (b"content-length", str(len(payload)).encode())]
        if status == 405:
            answer.append((b"allow", b"POST"))  # RFC 9110 §15.5.6: a 405 names them
        await send({"type": "http.response.start", "status": status, "headers": answer})
        await send({"type": "http.response.body", "body": payload})

    async def refuse(self, scope: Scope, send: Send, route: str, refusal: ApiError) -> None:
        """Answer ``refusal`` before anything reads the request (no body is read), counted
        under ``route``."""
        self._counter.labels(route, str(refusal.status)).inc()
        self._errors.labels(refusal.code).inc()
        body = _error(refusal.code, refusal.message)
        headers = [*_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _may_score(self, authorization: str | None) -> None:
        """Raise unless ``authorization`` may score. A token not in the cache is looked
        up in a worker thread, so a slow or hung database holds this request only, not
        the event loop, under the same bound as every other route's
        (:func:`~tunewatch.api._lookups.bounded_token_lookup`); a cached one is answered
        on the loop."""
        if self.ctx.auth.authenticate_cached(authorization, "score") is None:
            await bounded_token_lookup(partial(self._look_up_scorer, authorization))

    def _look_up_scorer(self, authorization: str | None) -> None:
        # the lookup, cached as on every other route (a store's failure is remembered, so
        # the check below raises it without asking the store again)
        self.ctx.auth.resolve(authorization)
        self.ctx.auth.authenticate(authorization, "score")

    async def _body(
        self,
        headers: dict[bytes, bytes],
        scope_headers: Iterable[tuple[bytes, bytes]],
        receive: Receive,
    ) -> bytes:
        """The request's body, inflated if it is compressed: read only for a caller the
        front has found may score (inflating costs far more than reading)."""
        coding = headers.get(b"content-encoding")
        if coding is not None:  # every line of it, as one list
            coding = content_encoding(scope_headers)
        wbits = content_coding(coding)
        if wbits is None:
            return await self._read(headers, receive)
        return await inflate(await self._read(headers, receive), wbits, self.limit)

    async def _read(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "invalid_request", "invalid Content-Length header")
            if len(declared) > 18 or int(declared) > self.limit:  # int() refuses 4,301 digits
                raise BodyTooLargeError(self.limit)
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyTooLargeError(self.limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _text(value: bytes | None) -> str | None:
    # HTTP header values are bytes; latin-1 maps each byte to one character (as Starlette).
    return None if value is None else value.decode("latin-1")


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": message, "code": code})
