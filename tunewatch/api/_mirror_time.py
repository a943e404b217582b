"""When a mirror record was scored, and which champion answered one naming no version.

``scored_at`` (optional) is when the serving stack scored the record: an RFC 3339 time
with its offset (``2025-06-01T12:00:00Z``, ``2025-06-01T14:00:00.25+02:00``), the form
of every time this API answers with and of those the Alertmanager webhook reads. The
record is stored at that time (the request's ``received_at``, the answer's
``created_at``), so drift and decay windows, label delay and retention read a backfill
as the traffic of its day; without it, at the time it is posted. A time past this
daemon's clock (by up to :data:`MAX_CLOCK_SKEW_S`, the skew the two clocks may have) is
stored as the time the record is received: stored as sent, its labels' delays were
negative and a window of the traffic ended before it started. A time more than
:data:`MAX_CLOCK_SKEW_S` past this daemon's clock, or older than
``recording.retention_days`` (the next purge would delete it unread; without retention,
before the Unix epoch) is refused, 400 ``invalid_request`` naming the record.

A record naming no ``version`` was answered by the champion
(:class:`Attribution`): with ``scored_at``, the version that was the champion at that
time (:class:`~tunewatch.store.ChampionHistory`: the model's promotions and rollbacks as
the store recorded them); without, the champion this process serves. A stack buffering
its records across a promotion posted v1's answers after v2 took over, and they were
stored as v2's. So for :func:`grace_s` after a champion change (the grace) a record
naming neither ``version`` nor ``scored_at`` may have been scored by either champion,
and is refused, 409 ``version_ambiguous``, unless its id is already recorded (a replay
stores nothing). The grace is :data:`CHAMPION_CHANGE_GRACE_S` plus
``scoring.refresh_s``, the most a process takes to serve a champion promoted elsewhere:
refused for five minutes after the change is seen here.

The history is read once per batch that needs it, and kept per model for up to
``scoring.refresh_s`` while the line-up serves the champion it ends with (a change this
process serves is read at once; one made elsewhere reaches it as its line-up does): a
stack mirroring each request as it answers it would otherwise add a read to each."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from shadow import Lineup
from tunewatch._config import Config
from tunewatch._runtime import ScoringRuntime
from tunewatch.api._errors import ApiError
from tunewatch.store import ChampionHistory

#: How far past this daemon's clock a ``scored_at`` may lie: the stack's clock and this
#: one may disagree by this much.
MAX_CLOCK_SKEW_S = 300.0
#: How long after a champion change (once this process serves it) a record naming
#: neither ``version`` nor ``scored_at`` is refused: a stack flushes the records it
#: buffers within seconds, and its retries after a 503 (a lock held up to
#: ``store.lock_timeout_s``, 30 s) or a 429 add tens more; five minutes is also the skew
#: ``scored_at`` may have, one bound on both doubts about time.
CHAMPION_CHANGE_GRACE_S = 300.0
#: The earliest ``scored_at`` taken without ``recording.retention_days``.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: RFC 3339's date-time (section 5.6): a ``T`` between date and time, and an offset of
#: hours 00-23 and minutes 00-59 (``fromisoformat`` read ``+05:99`` as 6 h 39 min, and the
#: record was stored 39 minutes from its time); the pattern the OpenAPI document gives
#: ``scored_at``.
SCORED_AT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(SCORED_AT_PATTERN)
_FORMAT = (
    "an RFC 3339 time with its offset (2025-06-01T12:00:00Z, 2025-06-01T14:00:00+02:00; "
    "an offset's hours 00-23, its minutes 00-59)"
)


def scored_at_of(
    value: Any, where: str, *, now: datetime, retention_days: float | None
) -> datetime | None:
    """``scored_at`` of the record at ``where`` as an aware UTC time, ``now`` when it
    lies later (``None`` when it has none); 400 ``invalid_request`` when it is no RFC
    3339 time with an offset, lies more than :data:`MAX_CLOCK_SKEW_S` past ``now``, or
    before ``retention_days`` ago (without retention, before :data:`EPOCH`)."""
    if value is None:
        return None
    field = f"{where}.scored_at"
    shown = repr(value) if len(repr(value)) <= 64 else repr(value)[:64] + "..."
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ApiError(400, "invalid_request", f"{field} must be {_FORMAT}, got {shown}")
    try:
        moment = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # a day or hour no calendar has
        raise ApiError(
            400, "invalid_request", f"{field} must be {_FORMAT}, got {shown}: {exc}"
        ) from exc
    if moment > now + timedelta(seconds=MAX_CLOCK_SKEW_S):
        raise ApiError(
            400,
            "invalid_request",
            f"{field} must not be in the future (at most {MAX_CLOCK_SKEW_S:g} s past this "
            f"daemon's clock, {now.isoformat()}), got {shown}",
        )
    if retention_days is not None and moment < now - timedelta(days=retention_days):
        raise ApiError(
            400,
            "invalid_request",
            f"{field} must be within recording.retention_days ({retention_days:g} days, "
            f"since {(now - timedelta(days=retention_days)).isoformat()}), got {shown}: the "
            "next retention purge would delete the record unread",
        )
    if moment < EPOCH:
        raise ApiError(
            400, "invalid_request", f"{field} must not be before {EPOCH.isoformat()}, got {shown}"
        )
    # within the skew, but ahead of this clock: received now (scored no later)
    return min(moment, now)


def grace_s(config: Config) -> float:
    """Seconds after a champion change during which a record naming neither ``version``
    nor ``scored_at`` is refused (see the module's docstring)."""
    return CHAMPION_CHANGE_GRACE_S + config.scoring.refresh_s


def ambiguous_since(history: ChampionHistory, now: datetime, grace: float) -> datetime | None:
    """When the champion last changed, if that was less than ``grace`` seconds before
    ``now`` and it replaced another champion (a model's first replaced none); else
    ``None``."""
    if not history.changes or history.previous in (None, history.current):
        return None
    when = history.changes[-1][0]
    return when if now - when < timedelta(seconds=grace) else None


class Attribution:
    """Which version answered each record of one mirror batch naming none (in the
    worker thread that checks the batch), the time ``now`` being the batch's."""

    def __init__(self, runtime: ScoringRuntime, model: str, lineup: Lineup, now: datetime):
        self._runtime = runtime
        self._model = model
        self._lineup = lineup
        self._now = now
        self._history: ChampionHistory | None = None

    def version(self, scored_at: datetime | None, where: str) -> tuple[int, bool]:
        """The version that answered the record at ``where``, and whether that is in
        doubt (no ``scored_at``, within the grace of a champion change): such a record
        is refused by :meth:`refusal` unless its id is recorded already. 409
        ``version_required`` when the model has no champion (at ``scored_at``, ever)."""
        if scored_at is not None:
            version = self.history().at(scored_at)
            if version is None:
                raise self._no_champion(where)
            return version, False
        champion = self._lineup.champion
        if champion is None:  # not `model_not_ready` (503, retry): the caller must name one
            raise self._no_champion(where)
        grace = grace_s(self._runtime.config)
        return champion.version, ambiguous_since(self.history(), self._now, grace) is not None

    def refusal(self, where: str) -> ApiError:
        """The 409 ``version_ambiguous`` of a record :meth:`version` found in doubt."""
        history = self.history()
        changed = history.changes[-1][0]
        age = (self._now - changed).total_seconds()
        return ApiError(
            409,
            "version_ambiguous",
            f"{where} names no version and no scoring time, and the champion of model "
            f"{self._model!r} changed from v{history.previous} to v{history.current} "
            f"{age:.0f} s ago ({changed.isoformat()}): it may have been scored by either. "
            "Send `version` or `scored_at`: for "
            f"{grace_s(self._runtime.config):g} s after a change a record naming neither "
            "is refused",
        )

    def history(self) -> ChampionHistory:
        """The model's champion history (:func:`champion_history`), once per batch."""
        if self._history is None:
            champion = self._lineup.champion
            self._history = champion_history(
                self._runtime, self._model, None if champion is None else champion.version
            )
        return self._history

    def _no_champion(self, where: str) -> ApiError:
        return ApiError(
            409,
            "version_required",
            f"{where}.version is required: model {self._model!r} has no champion",
        )


# Each runtime's models' histories as last read: (monotonic time of the read, history).
_read: WeakKeyDictionary[ScoringRuntime, dict[str, tuple[float, ChampionHistory]]] = (
    WeakKeyDictionary()
)
_read_lock = threading.Lock()


def champion_history(runtime: ScoringRuntime, model: str, serving: int | None) -> ChampionHistory:
    """``model``'s champion history, as read less than ``scoring.refresh_s`` ago if it
    ends with ``serving`` (the line-up's champion), else read again."""
    now = time.monotonic()
    with _read_lock:
        kept = _read.setdefault(runtime, {}).get(model)
    if kept is not None:
        read_at, history = kept
        if now - read_at < runtime.config.scoring.refresh_s and history.current == serving:
            return history
    history = runtime.store.champion_history(model)
    with _read_lock:
        _read.setdefault(runtime, {})[model] = (now, history)
    return history
