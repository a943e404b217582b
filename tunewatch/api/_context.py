"""What every route needs from the daemon, hung on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field
from starlette.requests import Request

from tunewatch._actions import Dispatcher
from tunewatch._auth import Authenticator, AuthError, Principal
from tunewatch._evaluation import Evaluator
from tunewatch._outage_log import ThrottledWarnings
from tunewatch._registry import Registry
from tunewatch._runtime import ScoringRuntime
from tunewatch.api._alert_shutdown import WebhookStop
from tunewatch.comparison import ComparisonRunner
from tunewatch.store import MAX_ID, MAX_REASON_LENGTH


def ascii_digits(value: object) -> object:
    """A number in a path or query as its text must spell it: ASCII digits only. Python's
    ``int`` (pydantic's lax reading) also takes ``1_0`` (10), ``+1``, `` 1`` and other
    scripts' digits, so one id had many spellings and a typo named another version."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        shown = value if len(value) <= 32 else value[:32] + "..."
        raise ValueError(f"must be a whole number in ASCII digits (0-9), got {shown!r}")
    return value


# Ids and version numbers are INTEGER columns, 32-bit in PostgreSQL. A larger number in a
# path or query can match nothing and would fail in the database driver (SQLite: past 64
# bits), so it is refused as a bad request before any lookup, as is one not spelt in
# plain ASCII digits.
RowId = Annotated[int, BeforeValidator(ascii_digits), Path(ge=0, le=MAX_ID)]
VersionFilter = Annotated[int | None, BeforeValidator(ascii_digits), Query(ge=0, le=MAX_ID)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must hold a character other than whitespace")
    return value


# Why a promotion, rollback, retirement or retune was asked for, as the audit log keeps
# it: one of whitespace only said nothing (the CLI refuses it too).
Reason = Annotated[
    str, Field(min_length=1, max_length=MAX_REASON_LENGTH), AfterValidator(_not_blank)
]


#: Worker threads the readiness routes' store checks may hold at once, per app: theirs
#: alone, so a probe answers while anyio's default pool is full, and a hung database holds
#: at most these (the probes behind them wait on the event loop, holding no thread).
PROBE_THREADS = 2
#: Worker threads the Alertmanager webhook's deliveries may hold at once, per app: a
#: burst of deliveries (every group's ``group_wait`` ending together, each group sent by
#: every HA peer) ran whole in anyio's default pool, which scoring's token look-ups use,
#: and took the store's connections.
ALERT_THREADS = 4
#: Deliveries waiting for one of those threads, per app; another is answered 503 at once.
ALERT_WAITING = 16


@dataclass(frozen=True, slots=True)
class AppContext:
    runtime: ScoringRuntime
    registry: Registry
    auth: Authenticator
    dispatcher: Dispatcher
    evaluator: Evaluator
    comparisons: ComparisonRunner | None = None
    recording: bool = True
    shadowing: bool = True
    # The worker threads the readiness routes' store checks may hold at once: theirs
    # alone (:func:`tunewatch.api._oip.check_ready`). One per app, as it serves on one
    # event loop: a limiter shared by the apps of a process (tests serve many, each on
    # its own loop) deadlocked a waiter on one loop released from another.
    probe_threads: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(PROBE_THREADS))
    # The worker threads the Alertmanager webhook's deliveries run in: theirs alone
    # (:mod:`tunewatch.api._alerts`), one limiter per app for the same reason.
    alert_threads: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(ALERT_THREADS))
    # The deliveries in progress (in a thread, or waiting for one): taken without waiting,
    # so a delivery past ``ALERT_THREADS + ALERT_WAITING`` is answered at once.
    alert_deliveries: CapacityLimiter = field(
        default_factory=lambda: CapacityLimiter(ALERT_THREADS + ALERT_WAITING)
    )
    # Each model's warning of mirror records refused as conflicts, logged at most once a
    # minute: a serving stack whose id counter restarted logged one per call as it ran.
    mirror_conflicts: dict[str, ThrottledWarnings] = field(default_factory=dict)
    # The webhook's stop, begun by ``tunewatch serve`` as it shuts down
    # (:mod:`tunewatch.api._alert_shutdown`).
    alert_stop: WebhookStop = field(default_factory=WebhookStop)


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def authenticate(request: Request, *permissions: str) -> Principal:
    """The caller, if its token grants any of ``permissions``; 401/403 otherwise."""
    auth = context(request).auth
    header = request.headers.get("authorization")
    last: AuthError | None = None
    for permission in permissions:
        try:
            return auth.authenticate(header, permission)
        except AuthError as exc:
            if exc.status == 401:
                raise
            last = exc
    assert last is not None
    raise last
