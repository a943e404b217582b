"""The daemon's file descriptors: its soft ``RLIMIT_NOFILE`` raised to the hard limit at
start, and a bound on connections below it, past which a request is answered 503.

Every connection takes a descriptor. At the limit ``accept()`` fails with ``EMFILE``, and
uvloop (libuv) then accepts each waiting connection and closes it at once, so that its
loop does not spin: the client sees its connection closed without an answer and nothing
is logged, while SQLite, a worker's stderr file and the candidate probe's pipes fail to
open too. Under 128 descriptors with 500 kept-alive connections every fresh request —
scoring, readiness, feedback, registration — was dropped so (243 of 243); under 1024
with 1,002 held connections, 18 of 249. Linux starts processes at a soft limit of 1024 (systemd's
default, a shell's ``ulimit -n``) whatever the hard limit allows, and Python does not
raise it, so the daemon raises its own, as servers do.

uvicorn's ``limit_concurrency`` answers a request 503 once the connections open, or the
requests running, reach it. It is set to the soft limit less :data:`FD_RESERVE`, so that a
client past it is answered and its connection closed rather than dropped: the same 500
connections, then bounded at 64, left 62 held and every fresh request answered, the
daemon at 86 descriptors of its 128. The reserve is never lent to connections, and a
limit that leaves fewer than :data:`MIN_CONNECTIONS` is refused at start: allowed half
its descriptors, a daemon under 64 kept 32 where it holds up to 46 besides its
connections, and under 100 scoring clients SQLite failed to open its database (18
requests answered 503 ``store_unavailable``) and 245 were dropped unanswered. uvicorn's own
answer is ``text/plain`` "Service Unavailable"; :func:`answering_over_limit` makes it our
``{"error", "code"}`` JSON (``connection_limit``). Not bounded so: connections that send
nothing — each is accepted, holds its descriptor until ``server.request_read_timeout_s``
closes it, and is never answered.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Callable
from typing import Final

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from tunewatch._errors import TunewatchError
from tunewatch.api._http_protocol import BoundedHttpToolsProtocol

logger = logging.getLogger(__name__)

FD_RESERVE: Final = 128
"""Descriptors kept from the open-file limit for all but client connections. Measured
(``/proc/<pid>/fd``): an idle daemon holds 15-22 (stdio, its log, epoll and eventfds, a
self-pipe, the listening socket, SQLite's database, WAL and shared-memory files); a busy
one, with a tuning job (its worker's stderr file), an evaluation, an audit verification
and 32 kept-alive scoring clients, peaked at 46 besides its connections on SQLite (16
pooled connections, each with the database and its WAL open) and 41 on PostgreSQL (18
pooled sockets, 13 eventfds). 128 is about three times that, for candidate probes (three
pipes each while they run), more tuning workers and Optuna's storage. Never lent to
connections: a limit too low to keep it is refused (:func:`connection_limit`)."""

MIN_CONNECTIONS: Final = 16
"""The fewest connections an open-file limit must leave beside :data:`FD_RESERVE`, or serve
refuses to start (below ``FD_RESERVE + MIN_CONNECTIONS``, 144): a daemon answering all but
a handful of clients 503 is better refused, with the limit to raise, than started."""

LOW_NOFILE: Final = 4096
"""A soft open-file limit below this, once raised, is warned about at start."""

LIMIT_ANSWER_CODE: Final = "connection_limit"

REFUSALS_LOGGED_EVERY_S: Final = 60.0
"""Refused requests are logged at most once this often (with how many there were), not
one line each: uvicorn's line a request flooded the log at the rate requests came."""


def connection_limit(soft: int) -> int:
    """uvicorn's ``limit_concurrency`` under a soft open-file limit of ``soft``: all but
    :data:`FD_RESERVE` descriptors. A :class:`TunewatchError` (``open_file_limit_too_low``)
    naming the limit to set when that leaves fewer than :data:`MIN_CONNECTIONS`."""
    limit = soft - FD_RESERVE
    if limit < MIN_CONNECTIONS:
        least = FD_RESERVE + MIN_CONNECTIONS
        raise TunewatchError(
            f"open-file limit (RLIMIT_NOFILE) {soft} leaves {max(limit, 0)} connections "
            f"once {FD_RESERVE} descriptors are kept for the store, workers and files, "
            f"fewer than the {MIN_CONNECTIONS} serve needs: raise the hard limit to at "
            f"least {least} (`ulimit -n {least}`, systemd's LimitNOFILE=, "
            f"docker run --ulimit nofile={least}:{least})",
            code="open_file_limit_too_low",
        )
    return limit


def raise_open_file_limit() -> int | None:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit, log the outcome
    and return :func:`connection_limit` of the soft limit now (None when unlimited), or
    raise its :class:`TunewatchError` when that limit is too low to serve.
    Warns when that soft limit is below :data:`LOW_NOFILE`, or cannot be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # a hard limit the kernel caps (nr_open)
            logger.warning(
                "could not raise the open-file limit (RLIMIT_NOFILE) from %d to its hard "
                "limit %s: %s",
                soft,
                _shown(hard),
                exc,
            )
        else:
            soft = hard
    if soft == resource.RLIM_INFINITY:
        logger.info("open-file limit (RLIMIT_NOFILE) unlimited: no bound on connections")
        return None
    limit = connection_limit(soft)
    change = f"raised from {before} to {soft}" if soft != before else f"{soft}"
    level = logging.WARNING if soft < LOW_NOFILE else logging.INFO
    advice = (
        f"; below {LOW_NOFILE}, raise the hard limit (`ulimit -Hn`, systemd's "
        "LimitNOFILE=, docker run --ulimit nofile=) to serve more clients"
        if level == logging.WARNING
        else ""
    )
    logger.log(
        level,
        "open-file limit (RLIMIT_NOFILE) %s (hard limit %s): requests past %d connections "
        "or requests at once are answered 503 %s, %d descriptors kept for the store, "
        "workers and files%s",
        change,
        _shown(hard),
        limit,
        LIMIT_ANSWER_CODE,
        soft - limit,
        advice,
    )
    return limit


def answering_over_limit(
    protocol: type[BoundedHttpToolsProtocol],
    *,
    limit: int,
    clock: Callable[[], float] = time.monotonic,
    counted: Callable[[], None] | None = None,
) -> type[BoundedHttpToolsProtocol]:
    """``protocol`` answering a request past uvicorn's ``limit_concurrency`` (``limit``)
    with our 503 JSON instead of uvicorn's text, logged at most every
    :data:`REFUSALS_LOGGED_EVERY_S` and each passed to ``counted`` (the app never sees
    it). Silences uvicorn's own line for each."""
    answer = _OverLimit(limit, clock, counted)
    logging.getLogger("uvicorn.error").addFilter(_not_uvicorn_over_limit_line)

    class OverLimitAnswered(protocol):  # type: ignore[valid-type,misc]
        def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
            # uvicorn picks its own answer for a request past the limit, pipelined ones too
            super()._start_asgi_task(cycle, answer if app is service_unavailable else app)

    return OverLimitAnswered


class _OverLimit:
    """The ASGI answer to a request past the limit, as uvicorn's: 503 and the connection
    closed (its descriptor freed), here in JSON."""

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float],
        counted: Callable[[], None] | None = None,
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._counted = counted
        message = (
            f"the server is at its limit of {limit} connections and requests at once (set "
            "from its open-file limit, RLIMIT_NOFILE); retry after `Retry-After` seconds"
        )
        self._body = json.dumps({"error": message, "code": LIMIT_ANSWER_CODE}).encode()
        self._logged_at: float | None = None
        self._unlogged = 0

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self._note()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self._body)),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})

    def _note(self) -> None:
        if self._counted is not None:
            self._counted()
        self._unlogged += 1
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < REFUSALS_LOGGED_EVERY_S:
            return
        logger.warning(
            "%d request(s) answered 503 %s: %d connections or requests at once, the most "
            "the open-file limit (RLIMIT_NOFILE) allows (logged at most every %g s)",
            self._unlogged,
            LIMIT_ANSWER_CODE,
            self._limit,
            REFUSALS_LOGGED_EVERY_S,
        )
        self._logged_at = now
        self._unlogged = 0


def _not_uvicorn_over_limit_line(record: logging.LogRecord) -> bool:
    return record.msg != "Exceeded concurrency limit."


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
