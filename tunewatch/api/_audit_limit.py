"""How many verifications of the audit chain (``GET /v1/audit?verify=true``) run at once
in a process.

A verification re-hashes every entry of the log, holding a pooled store connection and a
worker thread for the whole scan (9.4 s at 50k entries). Nothing bounded them: 16 viewer
requests at once exhausted the store's pool (token look-ups, the ``/readyz`` ping and the
leader lease waited for a connection and failed) and ``/readyz`` and scoring timed out for
about 75 s. So at most :data:`MAX_VERIFICATIONS_IN_PROGRESS` runs at once in a process
(:class:`AuditRoute`); another is answered at once, without taking a worker thread, with
429 ``audit_busy`` and ``Retry-After``. A page of the log without ``verify`` is not
limited: it costs what the page costs. The slot is the verifications' own, not shared
with the evaluation listings' (:mod:`tunewatch.api._listing_limit`) or the dashboard's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._route import ApiRoute
from tunewatch.api._slots import Slots, busy_description, busy_response

# Verifications in progress at once, per process: one answers every caller in turn; more
# only scan the same log again, each with a connection of the pool.
MAX_VERIFICATIONS_IN_PROGRESS = 1
# Seconds a caller answered 429 is asked to wait: a verification of 50k entries took 9.4 s.
RETRY_AFTER_S = 10
BUSY_CODE = "audit_busy"
BUSY_MESSAGE = (
    f"the audit chain is being verified: at most {MAX_VERIFICATIONS_IN_PROGRESS} "
    f"verification runs at once in this daemon; retry in {RETRY_AFTER_S} s, or read the "
    "log without `verify`"
)
# the 429 the audit route documents in /openapi.json
BUSY_RESPONSES = busy_description(
    BUSY_CODE, "`verify=true` while a verification of the chain is in progress in this daemon"
)

_slots = Slots(MAX_VERIFICATIONS_IN_PROGRESS)
_VERIFY: TypeAdapter[bool] = TypeAdapter(bool)


class AuditRoute(ApiRoute):
    """``GET /v1/audit``: an :class:`ApiRoute` whose requests asking for the chain to be
    verified run only while they hold the process's verification slot (their query and
    token checked inside it); without it they are answered 429 :data:`BUSY_CODE` at once.
    A request without ``verify``, or with one that reads false, is not limited."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        plain = super().get_route_handler()
        limited = _slots.limit(plain, _busy)

        async def route(request: Request) -> Response:
            return await (limited if _verifies(request) else plain)(request)

        return route


def _verifies(request: Request) -> bool:
    """Whether the route will verify the chain: ``verify`` read as the route reads it (the
    last value, as a bool; one that does not read is refused by the route, unverified)."""
    raw = request.query_params.get("verify")
    if raw is None:
        return False
    try:
        return _VERIFY.validate_python(raw)
    except ValidationError:
        return False


def _busy() -> Response:
    return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)
