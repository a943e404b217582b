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
delivery without claiming them (a write each). A dispatch that failed releases the
episode, and the next delivery handles it anew.

Deliveries are decided in the webhook's own worker threads, at most ``ALERT_THREADS``
at once per app, and at most ``ALERT_WAITING`` more wait for one, on the event loop (see
:func:`alertmanager_webhook`). The answer is 2xx after the commit; 503 when the store
cannot commit, when an episode's claim stays held while the delivery waits
``CLAIM_WAIT_S`` for it (the delivery holding it died: Alertmanager retries until the
claim times out), or ``webhook_busy`` (with ``Retry-After``, the body unread) when that
many deliveries are in progress already; and 2xx for valid payloads that are ignored
(unknown model, a resolved alert never seen firing, an alert whose ``startsAt`` is not
an RFC 3339 time: Alertmanager always sends one, and without it every episode of the
alert would share one key). An alert without a fingerprint is keyed by a hash of its
labels. An episode resolved before it was seen firing is stored resolved, and ignored
once: a resolve delivered again (a retry, an HA peer's, the group's next notification)
is not ignored, whether the episode was seen firing or not. A firing delivery of a
resolved episode within ``store._alert_episodes.REFIRE_AFTER`` (2 min) after the resolve
is stale (a retry, an HA peer's) and acted on by no delivery, and so is one that began
before the resolve however late it reaches the alert (a large group takes minutes to
decide; the delivery's start is read once, by the database's clock); one that began
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
import hashlib
import json
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from anyio import WouldBlock, to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tunewatch._actions import ActionOutcome
from tunewatch._errors import InvalidValueError, NotFoundError
from tunewatch.api._alert_ignores import Ignores, alert_names, report_truncated, shown
from tunewatch.api._body import parse_json_object
from tunewatch.api._context import ALERT_THREADS, ALERT_WAITING, AppContext, authenticate, context
from tunewatch.api._errors import ApiError, error_response

logger = logging.getLogger(__name__)

_MISSING = object()  # an alert without startsAt


def _fingerprint(alert: dict[str, Any], labels: dict[str, str]) -> str:
    """The alert's ``fingerprint``, else a hash of its labels: of their JSON, which tells
    ``{"x": "1\\nz=2"}`` from ``{"x": "1", "z": "2"}`` (``k=v`` lines did not)."""
    value = alert.get("fingerprint")
    if isinstance(value, str) and value:
        return value[:64]
    text = json.dumps(sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: RFC 3339's date-time (section 5.6), as Go's time.RFC3339Nano writes Alertmanager's.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def _starts_at(value: Any) -> str | None:
    """``startsAt`` as sent when it is an RFC 3339 time of at most 64 characters (the
    episode's column), else None. Alertmanager always sends one: without it every
    episode of an alert shared one key, and after the first resolved the later ones were
    taken for stale deliveries of it."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    if off_h is not None and (int(off_h) > 23 or int(off_m) > 59):
        return None
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:  # a day, hour, minute or second no calendar has
        return None
    return value


def dedupe_key(fingerprint: str, starts_at: str) -> str:
    """The job key of an episode: ``alert:{fingerprint}:{startsAt}``, which a fingerprint
    without a colon (Alertmanager's are hex) reads back unambiguously; one holding a colon
    gets ``alert#{len(fingerprint)}:{fingerprint}:{startsAt}``, which no key of the first
    form can equal (``#`` where it has ``:``). At most 138 characters."""
    if ":" not in fingerprint:
        return f"alert:{fingerprint}:{starts_at}"
    return f"alert#{len(fingerprint)}:{fingerprint}:{starts_at}"


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


class _Suppressions:
    """The owed retunes a delivery found still suppressed: a model in its cool-down, and
    the quota full (daemon-wide). Either stays so for the rest of the delivery, so its
    other owed episodes of that model (of every model, for the quota) are left owed for
    the next delivery without a write: each cost three writing transactions (the claim,
    the job's insert under the job lock, the settle), and a 5,000-alert group redelivered
    in its model's cool-down took 26 s on SQLite. A new episode is still claimed and
    dispatched (its alert and the suppression are recorded once), and tells the delivery
    of a suppression as well. A job that ends, or a cool-down that passes, while the
    delivery runs is acted on by the next one."""

    def __init__(self) -> None:
        self._cooling: set[str] = set()
        self._quota_full = False

    def note(self, model: str, outcome: ActionOutcome) -> None:
        if outcome.status != "suppressed":
            return
        if outcome.cause == "cooldown":
            self._cooling.add(model)
        elif outcome.cause == "quota":
            self._quota_full = True

    def still(self, model: str) -> bool:
        """Whether an owed retune of ``model`` is still suppressed, as this delivery found."""
        return self._quota_full or model in self._cooling


def handle_alerts(
    ctx: AppContext,
    body: dict[str, Any],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    started: datetime | None = None,
    actor: str = "alertmanager",
) -> dict[str, Any]:
    """Decide a delivery's alerts; ``actor``: who delivered them (the token's name), named
    in each episode's events. ``started``: the database's time as the delivery began,
    read at its first claim when not given. A firing alert reopens its resolved episode
    only when the resolve came ``REFIRE_AFTER`` before it: a delivery of a large group decides for
    minutes, and one that began before the resolve (Alertmanager gave up on it and sent
    the resolve in its next notification) reopened the episode when it reached the alert
    over ``REFIRE_AFTER`` after the resolve, queueing a retune for a resolved alert."""
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ApiError(400, "invalid_request", "`alerts` must be a list (Alertmanager v4)")
    # read at the delivery's first claim, not before: a delivery whose alerts are all
    # ignored needs no store (it is answered 200 while the store is down)
    start_of: Callable[[], datetime] = (
        functools.cache(ctx.runtime.store.database_now) if started is None else lambda: started
    )
    label = ctx.runtime.config.alerting.model_label
    # looked up once a delivery: a group is mostly one model's alerts
    known: Callable[[str], bool] = functools.cache(functools.partial(_known, ctx))
    wait = _ClaimWait(clock, sleep)
    suppressed = _Suppressions()
    ignores = Ignores()
    summary: dict[str, Any] = {
        "received": len(alerts),
        "new_episodes": 0,
        "jobs": [],
        "ignored": ignores.messages,
        "busy": [],  # claimed by another delivery: the webhook answers 503
    }
    for alert in alerts:
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
            _handle_alert(
                ctx, body, alert, label, summary, ignores, wait, suppressed, start_of, known, actor
            )
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


def _handle_alert(
    ctx: AppContext,
    body: dict[str, Any],
    alert: dict[str, Any],
    label: str,
    summary: dict[str, Any],
    ignores: Ignores,
    wait: _ClaimWait,
    suppressed: _Suppressions,
    start_of: Callable[[], datetime],
    known: Callable[[str], bool],
    actor: str,
) -> None:
    store = ctx.runtime.store
    labels = _string_labels(alert.get("labels"))
    # As long as the columns hold: Alertmanager's own values are far shorter.
    name = labels.get("alertname", "unnamed")[:200]
    raw_starts = alert.get("startsAt", _MISSING)
    fingerprint = _fingerprint(alert, labels)
    nul = _nul_in(
        labels,
        fingerprint=fingerprint,
        starts_at=raw_starts if isinstance(raw_starts, str) else "",
    )
    ignore = functools.partial(ignores.add, alertname=name, fingerprint=fingerprint)
    if nul is not None:
        ignore("nul", f"{name!r}: a NUL in {nul}", detail=f"a NUL in {nul}")
        return
    starts_at = _starts_at(raw_starts)
    if starts_at is None:
        got = "none" if raw_starts is _MISSING else shown(raw_starts)
        ignore(
            "starts_at",
            f"{name}: `startsAt` must be an RFC 3339 time of at most 64 characters "
            f"(Alertmanager always sends one), got {got}",
            detail=f"`startsAt` is not an RFC 3339 time: {got}",
        )
        return
    model = labels.get(label)
    status = alert.get("status", body.get("status"))
    if status not in ("firing", "resolved"):
        ignore(
            "status",
            f"{name}: status {status!r}",
            detail=f"status must be 'firing' or 'resolved', got {shown(status)}",
        )
        return
    if not isinstance(model, str):
        ignore(
            "model_label_missing",
            f"{name}: no known model in label {label!r}",
            detail=f"no label {shown(label)}",
        )
        return
    if not known(model):
        ignore(
            "model_unknown",
            f"{name}: no known model in label {label!r}",
            detail=f"label {shown(label)} is {shown(model)}, not a registered model",
        )
        return
    if status == "resolved":
        # One never seen firing is stored resolved: a firing delivery soon after is stale.
        # An owed retune is no longer tried, and is owed again if the alert fires again.
        # A resolve delivered again (a retry, an HA peer's) is no alert never seen firing.
        if store.resolve_alert_episode(fingerprint=fingerprint, starts_at=starts_at) == "unseen":
            ignore(
                "resolved_unseen",
                f"{name}: resolved, never seen firing",
                detail="resolved, never seen firing",
            )
        return
    # Claimed by another delivery: it decides in milliseconds, so wait a little for it;
    # one still holding the claim died deciding (killed, or the store failed before it
    # could release the claim): busy, answered 503 so Alertmanager retries until the
    # claim times out and a retry takes it. Not claimed: decided, resolved or owed. An
    # episode that needs no decision is only read, once: a group of thousands is
    # redelivered whole, and writes for each of its decided alerts outlasted
    # Alertmanager's timeout. So is an owed one whose retune this delivery already found
    # suppressed (see _Suppressions).
    payload = {
        "alertname": name,
        "fingerprint": fingerprint,
        "startsAt": starts_at,
        "labels": labels,
        "actor": actor,
    }
    retry = functools.partial(
        _retry_owed,
        ctx,
        model,
        payload,
        summary,
        suppressed,
        fingerprint=fingerprint,
        starts_at=starts_at,
        actor=actor,
    )
    claim: str | None = None
    for _ in wait.attempts():
        state = store.alert_episode_state(
            fingerprint=fingerprint, starts_at=starts_at, owed=_OWED, started=start_of()
        )
        if state == "settled":
            return
        if state == "held":
            continue
        if state == "owed":
            if suppressed.still(model) or retry():  # see _Suppressions
                return
            continue
        claim = store.claim_alert_episode(
            fingerprint=fingerprint,
            starts_at=starts_at,
            model=model,
            alertname=name,
            labels=labels,
            started=start_of(),
        )
        if claim is not None:
            break
        if retry():  # owed (it fired again after a resolve), decided or held meanwhile
            return
    if claim is None:
        summary["busy"].append(name)
        return
    summary["new_episodes"] += 1
    key = dedupe_key(fingerprint, starts_at)
    try:
        outcome = ctx.dispatcher.handle(
            model, "alert_received", payload, dedupe_key=key, actor=actor
        )
    except Exception:  # released, then re-raised: the request boundary logs it
        # released for Alertmanager's retry (a 503) or the next delivery; the error
        # itself goes on to the request boundary
        store.settle_alert_episode(
            fingerprint=fingerprint, starts_at=starts_at, claim=claim, decision=None
        )
        raise
    suppressed.note(model, outcome)
    # Only a final outcome decides the episode; a retune that the quota or a cool-down
    # suppressed is owed, tried again by a later delivery of the alert.
    if outcome.final:
        decision: str | None = outcome.describe()
    else:
        decision = _OWED if _still_owed(outcome) else None
    store.settle_alert_episode(
        fingerprint=fingerprint, starts_at=starts_at, claim=claim, decision=decision
    )
    if outcome.job_id is not None and outcome.status == "taken":
        summary["jobs"].append(outcome.job_id)


def _still_owed(outcome: ActionOutcome) -> bool:
    return outcome.status == "suppressed" and outcome.cause in _OWED_CAUSES


def _retry_owed(
    ctx: AppContext,
    model: str,
    payload: dict[str, Any],
    summary: dict[str, Any],
    suppressed: _Suppressions,
    *,
    fingerprint: str,
    starts_at: str,
    actor: str,
) -> bool:
    """A later delivery of an episode it could not claim: when its retune is owed, claim
    it and try again to queue it, recording nothing while it is still suppressed. The
    delivery holding the claim records the outcome, then settles the episode; a duplicate
    too (a delivery that queued the job failed before it recorded it, and left it owed).
    False when another delivery holds the claim: the caller waits for it like for any
    claim. True when there is nothing to do: the episode is decided or resolved.
    ``suppressed`` learns what the retry found. (An episode found owed is left owed,
    unclaimed, while its retune is still suppressed as this delivery found: see
    :class:`_Suppressions`.)"""
    store = ctx.runtime.store
    claim = store.claim_owed_alert_episode(fingerprint=fingerprint, starts_at=starts_at, owed=_OWED)
    if claim is None:
        # decided, or resolved (the marker stays on a resolved owed episode, tried again
        # only if the alert fires again after REFIRE_AFTER): nothing to do
        return not store.alert_episode_claimed(fingerprint=fingerprint, starts_at=starts_at)
    key = dedupe_key(fingerprint, starts_at)
    try:
        outcome = ctx.dispatcher.queue_owed(model, "alert_received", payload, dedupe_key=key)
        suppressed.note(model, outcome)
        if _still_owed(outcome):
            decision: str | None = _OWED
        else:
            # a dispatch that failed releases the episode: the next delivery handles it anew
            decision = outcome.describe() if outcome.final else None
            # recorded before the episode settles, as the first delivery does: settled
            # first, a record that failed left the job queued with no action event, and
            # the retry found the episode decided and recorded nothing
            ctx.dispatcher.record(model, "alert_received", outcome, actor=actor)
        store.settle_alert_episode(
            fingerprint=fingerprint, starts_at=starts_at, claim=claim, decision=decision
        )
    except Exception:  # owed again, then re-raised: the request boundary logs it
        # owed again for Alertmanager's retry (a 503), which finds a job queued here (a
        # duplicate) and records it; the error goes on to the request boundary
        store.settle_alert_episode(
            fingerprint=fingerprint, starts_at=starts_at, claim=claim, decision=_OWED
        )
        raise
    if outcome.job_id is not None and outcome.status == "taken":
        summary["jobs"].append(outcome.job_id)
    return True


def _string_labels(labels: Any) -> dict[str, str]:
    """An alert's ``labels`` with only the labels whose value is a string, as
    Alertmanager's always are; the rest are dropped and logged. Not an object: none."""
    if not isinstance(labels, dict):
        return {}
    kept = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
    if len(kept) < len(labels):
        dropped = sorted(str(k) for k in labels if k not in kept)
        logger.warning(
            "alert %r: dropped %d label(s) whose value is not a string (Alertmanager's "
            "labels are strings): %s",
            kept.get("alertname", "unnamed")[:200],
            len(dropped),
            [k[:100] for k in dropped[:10]],
        )
    return kept


def _nul_in(labels: dict[str, str], *, fingerprint: str, starts_at: str) -> str | None:
    """Where the alert holds a NUL (a label's name or value, the fingerprint, startsAt);
    None when nowhere."""
    for key, value in labels.items():
        if "\x00" in key:
            return f"a label name {key!r}"
        if "\x00" in value:
            return f"label {key!r}"
    if "\x00" in fingerprint:
        return "the fingerprint"
    if "\x00" in starts_at:
        return "startsAt"
    return None


def _known(ctx: AppContext, model: str) -> bool:
    try:
        ctx.runtime.store.get_model(model)
    except NotFoundError:
        return False
    return True


#: The code of a delivery answered 503 because ``ALERT_THREADS`` deliveries run and
#: ``ALERT_WAITING`` wait already (:func:`alertmanager_webhook`).
BUSY_CODE = "webhook_busy"
#: Seconds a delivery answered :data:`BUSY_CODE` is asked to wait (Alertmanager retries a
#: 5xx with its own backoff; the header is for other callers).
RETRY_AFTER_S = 5
_BUSY_MESSAGE = (
    f"the webhook is busy: {ALERT_THREADS} deliveries are being decided and {ALERT_WAITING} "
    f"wait in this daemon; retry in {RETRY_AFTER_S} s"
)


def _handle_body(ctx: AppContext, raw: bytes, actor: str) -> dict[str, Any]:
    """The delivery's body parsed and its alerts handled, in one worker thread: a large
    group (thousands of alerts, megabytes) parsed on the event loop held every request of
    the process (a 7.8 MiB one about 200 ms), and its tree is released there too. An
    error it raises leaves with the locals of its frames cleared, in the worker: a refused
    body's parsed tree is not released on the event loop when the error is answered."""
    try:
        return handle_alerts(ctx, parse_json_object(raw), actor=actor)
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
    exhausted the store's connection pool (503 ``store_unavailable``)."""
    ctx = context(request)
    principal = authenticate(request, "alert")
    in_progress = ctx.alert_deliveries
    try:
        in_progress.acquire_nowait()  # on the loop, without waiting: exact under a burst
    except WouldBlock:
        busy = error_response(503, BUSY_CODE, _BUSY_MESSAGE)
        busy.headers["Retry-After"] = str(RETRY_AFTER_S)
        return busy
    try:
        raw = await request.body()
        summary = await to_thread.run_sync(
            _handle_body, ctx, raw, principal.name, limiter=ctx.alert_threads
        )
    finally:
        in_progress.release()
    if summary["busy"]:
        raise ApiError(
            503,
            "alert_busy",
            f"alerts {summary['busy']} are being decided by another delivery; retry",
        )
    return JSONResponse(summary)


routes = [Route("/v1/alerts/alertmanager", alertmanager_webhook, methods=["POST"])]
