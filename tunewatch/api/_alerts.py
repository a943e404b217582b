"""Alertmanager webhook (payload version 4): alerts become events and re-tuning jobs.

Delivery is at least once and a slow handler can receive the same group again while the
first delivery still runs, so every firing alert is keyed by its episode
(``fingerprint`` + ``startsAt``) and one delivery at a time claims it (a compare-and-set
on the episode row; a claim whose delivery died is taken over after
``store._alert_episodes.CLAIM_TIMEOUT``). Only the claimant dispatches, and the job's unique
``dedupe_key`` keeps it to one job per episode. Only a final outcome (a job queued, one
queued before, no action configured) decides an episode. A retune that the quota or a
cool-down suppressed leaves it owed: the episode's ``alert_received`` and the suppression
are recorded once, by the delivery that first claimed it, and a later delivery of the
alert, while it fires, claims the owed episode like any other (deliveries meanwhile wait
for it) and tries again to queue the job without recording the alert again
(:meth:`Dispatcher.queue_owed`): nothing while it is still suppressed, the outcome once
it settles. Once a delivery finds a model's retune suppressed by its cool-down (any
model's, by the quota), it leaves that model's other owed episodes owed for the next
delivery without claiming them (a write each). An owed episode is settled without a job
of its own by a retune of its model that the delivery retrying it queued (for another
alert, after the owed one was received): alerts of one model firing together, one per
region say, got a retune each, one per passed cool-down. A dispatch that failed before the
episode's ``alert_received`` was recorded releases the episode, and the next delivery
handles it anew; one that failed after it leaves the episode owed, and the next delivery
completes its action without recording the alert again (it was recorded, and counted,
twice).

Deliveries are decided in the webhook's own worker threads, at most ``ALERT_THREADS``
at once per app, and at most ``ALERT_WAITING`` more wait for one, on the event loop (see
:func:`alertmanager_webhook`). The answer is 2xx after the commit; 503 when the store
cannot commit, when an episode's claim stays held while the delivery waits
``CLAIM_WAIT_S`` for it (the delivery holding it died: Alertmanager retries until the
claim times out), or ``webhook_busy`` (with ``Retry-After``, the body unread) when that
many deliveries are in progress already, or ``shutting_down`` (with ``Retry-After``)
once the daemon stops (:mod:`tunewatch.api._alert_shutdown`); and 2xx for valid payloads
that are ignored (unknown model, a resolved alert never seen firing, an alert whose
``startsAt`` is not an RFC 3339 time: Alertmanager always sends one, and without it every
episode of the alert would share one key). An alert without a fingerprint is keyed by a hash of its
labels. An episode resolved before it was seen firing is stored resolved, and ignored
once: a resolve delivered again (a retry, an HA peer's, the group's next notification)
is not ignored, whether the episode was seen firing or not. A firing delivery of a
resolved episode within ``store._alert_episodes.REFIRE_AFTER`` (2 min) after the resolve
is stale (a retry, an HA peer's) and acted on by no delivery, and so is one that began
before the resolve however late it reaches the alert (a large group takes minutes to
decide, and a delivery may wait for a thread first: its start is its arrival, by the
database's clock, read at its first claim less the time since it arrived); one that began
later is the alert firing again (Alertmanager resolves an alert its sender stopped
refreshing, and fires it again with the same fingerprint and ``startsAt`` when the
sender is back), which reopens the episode: a retune owed when it resolved is owed
again, one never decided is decided anew, and a decided one gets no second job. An alert
the store cannot hold is ignored on its own, with nothing of it stored: refusing the
delivery would make Alertmanager resend the group, and its valid alerts would never be
acted on. A NUL in a label's name or value, the fingerprint or ``startsAt`` is such a
value on both backends (PostgreSQL's ``json`` would keep one in a label but could not
read the row's fields back, and every look-up of the model's actions would fail).
Alertmanager's labels are strings: a label whose value is anything else is dropped
(logged) before the alert is read, so no nested value reaches the episode, the event or
the job (one nested a few hundred deep made every listing that showed it fail to
serialise). Nothing else of the payload (annotations, the group's labels) is stored.

Alertmanager does not log a 2xx answer's body, so the alerts a delivery ignores, and
those a truncated group left out (``truncatedAlerts``), are also logged, once per
delivery, and counted by reason (:mod:`tunewatch.api._alert_ignores`). The episode's
``alert_received`` event and its action events name the token that delivered it
(``actor``), so deliveries of two Alertmanager clusters, or an admin's by hand, can be
told apart.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anyio import WouldBlock, to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tunewatch._actions import ActionOutcome
from tunewatch._errors import InvalidValueError, NotFoundError
from tunewatch.api._alert_ignores import Ignores, alert_names, report_truncated, shown
from tunewatch.api._alert_keys import AlertRead, dedupe_key, read_alert
from tunewatch.api._alert_retunes import Retunes
from tunewatch.api._alert_shutdown import ShuttingDown, WebhookStop
from tunewatch.api._body import parse_json_object
from tunewatch.api._context import ALERT_THREADS, ALERT_WAITING, AppContext, authenticate, context
from tunewatch.api._errors import ApiError, error_response
from tunewatch.store import Event

logger = logging.getLogger(__name__)

#: How long a delivery waits for a claim another delivery holds, counted as time asleep.
CLAIM_WAIT_S = 2.0
_PAUSE_S = 0.05

#: The decision of an episode whose retune the quota or a cool-down suppressed: the
#: store's claim takes it for decided, and a later delivery tries the retune again.
_OWED = "retune owed: suppressed by the quota or a cool-down; the next delivery retries it"
#: The causes of a suppressed retune that the alert's next delivery tries again.
_OWED_CAUSES = ("quota", "cooldown")


class _ClaimWait:
    """A delivery's waits for claims that other deliveries hold. A live delivery decides an
    episode in milliseconds, so each held episode is waited for until ``CLAIM_WAIT_S`` of
    this delivery's time asleep has gone by; the time spent deciding its other alerts does
    not count (one deadline for the whole delivery made two overlapping deliveries of a
    large group answer 503 after 2 s, although every claim they met settled at once). A
    claim still held after its wait belongs to a delivery that died, and the episodes held
    after it are busy at once: a group of N episodes a dead delivery held answered its 503
    after N waits."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._outlasted = False  # a claim outlasted its wait: the holder looks dead

    def attempts(self) -> Iterator[None]:
        """One attempt at an episode's claim at once, then one after each pause until the
        wait for it is over (no pause once a claim outlasted its wait)."""
        yield
        waited = 0.0
        while not self._outlasted:
            if waited >= CLAIM_WAIT_S:
                self._outlasted = True
                return
            before = self._clock()
            self._sleep(_PAUSE_S)
            waited += self._clock() - before
            yield


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What deciding one alert of a delivery needs of the delivery."""

    ctx: AppContext
    body: dict[str, Any]
    label: str  # the label naming an alert's model
    summary: dict[str, Any]
    ignores: Ignores
    wait: _ClaimWait
    retunes: Retunes
    start_of: Callable[[], datetime]  # the delivery's start, by the database's clock
    known: Callable[[str], bool]  # whether a model is registered
    actor: str
    stop: WebhookStop | None

    def stopped(self) -> bool:
        """Whether the daemon's stop leaves no time to decide another alert."""
        return self.stop is not None and self.stop.over()


def handle_alerts(
    ctx: AppContext,
    body: dict[str, Any],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    started: datetime | None = None,
    arrived: float | None = None,
    stop: WebhookStop | None = None,
    actor: str = "alertmanager",
) -> dict[str, Any]:
    """Decide a delivery's alerts; ``actor``: who delivered them (the token's name), named
    in each episode's events. ``started``: the database's time as the delivery began;
    when not given, the database's time at its first claim less the time since it
    ``arrived`` (by ``clock``, which times its waits too; without one, now). A firing
    alert reopens its resolved episode only when the resolve came ``REFIRE_AFTER`` before
    it: a delivery of a large group decides for minutes, and one that began before the
    resolve (Alertmanager gave up on it and sent the resolve in its next notification)
    reopened the episode when it reached the alert over ``REFIRE_AFTER`` after the
    resolve, queueing a retune for a resolved alert; one that waited that long for a
    webhook thread did the same from its first alert. ``stop``: the daemon's, checked
    before each alert: :class:`ShuttingDown` once it leaves no time to decide one."""
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ApiError(400, "invalid_request", "`alerts` must be a list (Alertmanager v4)")
    store = ctx.runtime.store
    since = clock() if arrived is None else arrived

    def began() -> datetime:
        return store.database_now() - timedelta(seconds=max(0.0, clock() - since))

    ignores = Ignores()
    summary: dict[str, Any] = {
        "received": len(alerts),
        "new_episodes": 0,
        "jobs": [],
        "ignored": ignores.messages,
        "busy": [],  # claimed by another delivery: the webhook answers 503
    }
    delivery = _Delivery(
        ctx=ctx,
        body=body,
        label=ctx.runtime.config.alerting.model_label,
        summary=summary,
        ignores=ignores,
        wait=_ClaimWait(clock, sleep),
        retunes=Retunes(),
        # read at the delivery's first claim, not before: a delivery whose alerts are all
        # ignored needs no store (it is answered 200 while the store is down)
        start_of=functools.cache(began) if started is None else lambda: started,
        # looked up once a delivery: a group is mostly one model's alerts
        known=functools.cache(functools.partial(_known, ctx)),
        actor=actor,
        stop=stop,
    )
    for alert in alerts:
        if delivery.stopped():  # each alert is committed on its own
            raise ShuttingDown()
        if not isinstance(alert, dict):
            ignores.add(
                "not_an_object",
                "not an object",
                alertname="unnamed",
                fingerprint=None,
                detail=f"got {shown(alert)}",
            )
            continue
        try:
            _handle_alert(delivery, alert)
        except InvalidValueError as exc:
            name, fingerprint = alert_names(alert)
            ignores.add(
                "unstorable",
                f"cannot be stored: {exc.message}",
                alertname=name,
                fingerprint=fingerprint,
                detail=exc.message[:200],
            )
    metrics = ctx.runtime.metrics
    ignores.report(metrics, received=len(alerts), actor=actor)
    report_truncated(metrics, body.get("truncatedAlerts", 0), actor=actor)
    return summary


def _handle_alert(delivery: _Delivery, alert: dict[str, Any]) -> None:
    read = read_alert(
        alert,
        group_status=delivery.body.get("status"),
        label=delivery.label,
        known=delivery.known,
        ignores=delivery.ignores,
    )
    if read is None:  # ignored
        return
    if read.status == "resolved":
        # One never seen firing is stored resolved: a firing delivery soon after is stale.
        # An owed retune is no longer tried, and is owed again if the alert fires again.
        # A resolve delivered again (a retry, an HA peer's) is no alert never seen firing.
        resolved = delivery.ctx.runtime.store.resolve_alert_episode(
            fingerprint=read.fingerprint, starts_at=read.starts_at
        )
        if resolved == "unseen":
            delivery.ignores.add(
                "resolved_unseen",
                f"{read.name}: resolved, never seen firing",
                alertname=read.name,
                fingerprint=read.fingerprint,
                detail="resolved, never seen firing",
            )
        return
    _decide_firing(delivery, read)


def _decide_firing(delivery: _Delivery, read: AlertRead) -> None:
    ctx, actor = delivery.ctx, delivery.actor
    store = ctx.runtime.store
    name, fingerprint, starts_at, model = read.name, read.fingerprint, read.starts_at, read.model
    # Claimed by another delivery: it decides in milliseconds, so wait a little for it;
    # one still holding the claim died deciding (killed, or the store failed before it
    # could release the claim): busy, answered 503 so Alertmanager retries until the
    # claim times out and a retry takes it. Not claimed: decided, resolved or owed. An
    # episode that needs no decision is only read, once: a group of thousands is
    # redelivered whole, and writes for each of its decided alerts outlasted
    # Alertmanager's timeout. So is an owed one whose retune this delivery already found
    # suppressed (see Retunes).
    payload = {
        "alertname": name,
        "fingerprint": fingerprint,
        "startsAt": starts_at,
        "labels": read.labels,
        "actor": actor,
    }
    retry = functools.partial(
        _retry_owed, delivery, model, payload, fingerprint=fingerprint, starts_at=starts_at
    )
    claim: str | None = None
    for _ in delivery.wait.attempts():
        if delivery.stopped():  # a wait for a held claim, too, ends at the stop
            raise ShuttingDown()
        state = store.alert_episode_state(
            fingerprint=fingerprint, starts_at=starts_at, owed=_OWED, started=delivery.start_of()
        )
        if state == "settled":
            return
        if state == "held":
            continue
        if state == "owed":
            if delivery.retunes.leaves_owed(model) or retry():  # see Retunes
                return
            continue
        claim = store.claim_alert_episode(
            fingerprint=fingerprint,
            starts_at=starts_at,
            model=model,
            alertname=name,
            labels=read.labels,
            started=delivery.start_of(),
        )
        if claim is not None:
            break
        if retry():  # owed (it fired again after a resolve), decided or held meanwhile
            return
    if claim is None:
        delivery.summary["busy"].append(name)
        return
    settle = functools.partial(
        store.settle_alert_episode, fingerprint=fingerprint, starts_at=starts_at, claim=claim
    )
    if delivery.stopped():  # the claim came too late (it waited for a lock): released
        settle(decision=None)
        raise ShuttingDown()
    delivery.summary["new_episodes"] += 1
    recorded: list[Event] = []  # the episode's alert_received, once written
    try:
        outcome = ctx.dispatcher.handle(
            model,
            "alert_received",
            payload,
            dedupe_key=dedupe_key(fingerprint, starts_at),
            actor=actor,
            recorded=recorded.append,
        )
    except Exception:  # settled, then re-raised: the request boundary logs it
        # For Alertmanager's retry (a 503) or the next delivery: released when the alert
        # was not recorded (it is handled anew); owed once it was, so that the retry
        # completes the action (queues the job, records its outcome) without recording
        # the alert again. The error itself goes on to the request boundary.
        settle(decision=_OWED if recorded else None)
        raise
    delivery.retunes.note(model, outcome)
    # Only a final outcome decides the episode; a retune that the quota or a cool-down
    # suppressed is owed, tried again by a later delivery of the alert.
    if outcome.final:
        decision: str | None = outcome.describe()
    else:
        decision = _OWED if _still_owed(outcome) else None
    settle(decision=decision)
    if outcome.job_id is not None and outcome.status == "taken":
        delivery.summary["jobs"].append(outcome.job_id)


def _still_owed(outcome: ActionOutcome) -> bool:
    return outcome.status == "suppressed" and outcome.cause in _OWED_CAUSES


def _retry_owed(
    delivery: _Delivery,
    model: str,
    payload: dict[str, Any],
    *,
    fingerprint: str,
    starts_at: str,
) -> bool:
    """A later delivery of an episode it could not claim: when its retune is owed, claim
    it and try again to queue it, recording nothing while it is still suppressed. The
    delivery holding the claim records the outcome, then settles the episode; a duplicate
    too (a delivery that queued the job failed before it recorded it, and left it owed),
    and a retune of the model this delivery queued, after the episode was received, which
    settles it without a job of its own (see :class:`Retunes`). False when another
    delivery holds the claim: the caller waits for it like for any claim. True when there
    is nothing to do: the episode is decided or resolved. ``delivery.retunes`` learns what
    the retry found. (An episode found owed is left owed, unclaimed, while its retune is
    still suppressed as this delivery found: see :class:`Retunes`.)"""
    ctx = delivery.ctx
    store = ctx.runtime.store
    claim = store.claim_owed_alert_episode(fingerprint=fingerprint, starts_at=starts_at, owed=_OWED)
    if claim is None:
        # decided, or resolved (the marker stays on a resolved owed episode, tried again
        # only if the alert fires again after REFIRE_AFTER): nothing to do
        return not store.alert_episode_claimed(fingerprint=fingerprint, starts_at=starts_at)
    settle = functools.partial(
        store.settle_alert_episode, fingerprint=fingerprint, starts_at=starts_at, claim=claim
    )
    try:
        if delivery.stopped():
            raise ShuttingDown()  # owed again, below
        retuned = delivery.retunes.queued(model)
        if retuned is not None:
            outcome = ActionOutcome(
                "retune",
                "duplicate",
                f"already handled by job {retuned}, a retune of {model!r} queued after "
                "this alert was received",
                retuned,
            )
        else:
            outcome = ctx.dispatcher.queue_owed(
                model, "alert_received", payload, dedupe_key=dedupe_key(fingerprint, starts_at)
            )
        delivery.retunes.note(model, outcome)
        if _still_owed(outcome):
            decision: str | None = _OWED
        else:
            # a dispatch that failed releases the episode: the next delivery handles it anew
            decision = outcome.describe() if outcome.final else None
            # recorded before the episode settles, as the first delivery does: settled
            # first, a record that failed left the job queued with no action event, and
            # the retry found the episode decided and recorded nothing
            ctx.dispatcher.record(model, "alert_received", outcome, actor=delivery.actor)
        settle(decision=decision)
    except Exception:  # owed again, then re-raised: the request boundary logs it
        # owed again for Alertmanager's retry (a 503) or the daemon's stop, which finds a
        # job queued here (a duplicate) and records it; the error goes on to the request
        # boundary
        settle(decision=_OWED)
        raise
    if outcome.job_id is not None and outcome.status == "taken":
        delivery.summary["jobs"].append(outcome.job_id)
    return True


def _known(ctx: AppContext, model: str) -> bool:
    try:
        ctx.runtime.store.get_model(model)
    except NotFoundError:
        return False
    return True


#: The code of a delivery answered 503 because ``ALERT_THREADS`` deliveries run and
#: ``ALERT_WAITING`` wait already (:func:`alertmanager_webhook`).
BUSY_CODE = "webhook_busy"
#: Seconds a delivery answered :data:`BUSY_CODE` or ``shutting_down`` is asked to wait
#: (Alertmanager retries a 5xx with its own backoff; the header is for other callers).
RETRY_AFTER_S = 5
_BUSY_MESSAGE = (
    f"the webhook is busy: {ALERT_THREADS} deliveries are being decided and {ALERT_WAITING} "
    f"wait in this daemon; retry in {RETRY_AFTER_S} s"
)


def _retry_later(code: str, message: str) -> Response:
    """A JSON 503 with ``Retry-After``."""
    answer = error_response(503, code, message)
    answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer


def _handle_body(
    ctx: AppContext, raw: bytes, actor: str, arrived: float, stop: WebhookStop
) -> dict[str, Any]:
    """The delivery's body parsed and its alerts handled, in one worker thread: a large
    group (thousands of alerts, megabytes) parsed on the event loop held every request of
    the process (a 7.8 MiB one about 200 ms), and its tree is released there too. An
    error it raises leaves with the locals of its frames cleared, in the worker: a refused
    body's parsed tree is not released on the event loop when the error is answered.
    ``arrived``: when the delivery arrived, by ``time.monotonic``."""
    try:
        return handle_alerts(ctx, parse_json_object(raw), actor=actor, arrived=arrived, stop=stop)
    except Exception as exc:  # re-raised: only the frames' locals are dropped
        traceback.clear_frames(exc.__traceback__)
        raise


async def alertmanager_webhook(request: Request) -> Response:
    """A delivery is decided in one of the webhook's own worker threads
    (``ctx.alert_threads``), at most ``ALERT_THREADS`` at once; up to ``ALERT_WAITING``
    more wait for one on the event loop, their bodies read, holding no thread (counted by
    ``ctx.alert_deliveries``, taken without waiting). Another is answered 503
    :data:`BUSY_CODE` with ``Retry-After`` at once, its body unread: Alertmanager retries a
    5xx with backoff, so no alert is lost. Each delivery ran whole in anyio's default
    pool, which scoring's token look-ups use too, and took store connections: 48 at once
    (a Prometheus restart, every group sent by every HA peer) held scoring 38-50 s and
    exhausted the store's connection pool (503 ``store_unavailable``).

    The delivery begins as it arrives: its wait for a thread is part of its time (see
    :func:`handle_alerts`). Once the daemon stops (:mod:`tunewatch.api._alert_shutdown`), a
    delivery waiting for a thread, or arriving, is answered 503 ``shutting_down`` with
    ``Retry-After`` without being started, and one being decided is answered so once it
    stops between two alerts."""
    arrived = time.monotonic()
    ctx = context(request)
    principal = authenticate(request, "alert")
    stop = ctx.alert_stop
    in_progress = ctx.alert_deliveries
    try:
        in_progress.acquire_nowait()  # on the loop, without waiting: exact under a burst
    except WouldBlock:
        return _retry_later(BUSY_CODE, _BUSY_MESSAGE)
    summary: dict[str, Any] | None = None
    try:
        raw = await request.body()
        with stop.waiting():  # cancelled, while it waits for a thread, by the stop
            summary = await to_thread.run_sync(
                _handle_body, ctx, raw, principal.name, arrived, stop, limiter=ctx.alert_threads
            )
    except ShuttingDown as exc:
        return _retry_later(exc.code, exc.message)
    finally:
        in_progress.release()
    if summary is None:  # not started: the stop began while it waited for a thread
        stopped = ShuttingDown()
        return _retry_later(stopped.code, stopped.message)
    if summary["busy"]:
        raise ApiError(
            503,
            "alert_busy",
            f"alerts {summary['busy']} are being decided by another delivery; retry",
        )
    return JSONResponse(summary)


routes = [Route("/v1/alerts/alertmanager", alertmanager_webhook, methods=["POST"])]
