"""Events to actions: each model's triggers decide what an event causes, subject to
one active retune job per model (a trigger firing while it is queued or running is a
duplicate of it), per-model cool-downs (held by a job that did not fail and was not
cancelled; a standing schedule's run is held by the model's other retunes only, not by
the jobs its schedule queued) and a daemon-wide quota on concurrent tuning jobs. Every
action, taken or suppressed, is recorded as an event (``action_<status>``) with its reason; a
promotion is recorded by the comparison loop that carries it out, once the guardrails
and governance have decided (taken, refused or pending approval). A retune still owed may
be tried again (:meth:`Dispatcher.retry`): only the attempt that settles it is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, get_args

from monitor import ServingMetrics
from tunewatch._config import Config, EventType
from tunewatch._errors import ConflictError
from tunewatch.store import Event, JobAudit, JobRow, Store

logger = logging.getLogger(__name__)

# An owed retune's job, if queued, is among the model's newest: the quota keeps jobs few.
_JOBS_SINCE_EVENT = 50
# How far the clock that stamps an event (its host's) may run ahead of the one that stamps
# its job (the database's) for a job known by no key of the event's to count as queued
# after it (see Dispatcher.owed). Only this fallback compares the two clocks.
_CLOCK_SKEW = timedelta(minutes=1)

# The outcomes that settle a trigger (see ActionOutcome.final): an action taken, one taken
# before (a duplicate), none configured, a promotion refused or sent for approval. A
# suppressed action is still owed; a deferred one (promote) is recorded by its owner.
SETTLED: tuple[str, ...] = ("taken", "duplicate", "none", "refused", "pending_approval")
#: Every outcome recorded as an ``action_<outcome>`` event.
OUTCOMES: tuple[str, ...] = (*SETTLED, "suppressed")
#: Every event type a dispatcher handles, and the scheduler's leader counts from the store
#: (``tunewatch_events_total{type}``, :mod:`tunewatch._event_counts`).
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: The events counted in ``tunewatch_events_total``: the trigger events, and the rollback
#: watch's own, a rollback it carried out and one refused (the previous champion's
#: artefact unreadable: alerted on by the shipped TunewatchRollbackFailed rule).
COUNTED_EVENTS: tuple[str, ...] = (*EVENT_TYPES, "rollback_triggered", "rollback_failed")


def count_events_from_zero(metrics: ServingMetrics, model: str) -> None:
    """Export ``model``'s ``tunewatch_events_total`` at 0 for every event counted
    (:data:`COUNTED_EVENTS`; the rollback watch's ``rollback_failed``, stored once per
    test, was born at 1 and stayed there, and its rule never paged) before its
    first event (:meth:`ServingMetrics.start_at_zero`): created at the event, the first of
    each (model, type) in a process read 1, which ``increase()`` cannot count, and the
    dashboard's "Events raised" panel missed it. ``tunewatch_notifications_total`` too:
    any event's trigger may be ``do: notify``, and its first notice must alert.

    The scheduler's leader counts both from the store, whichever process raised the
    event (:mod:`tunewatch._event_counts`), and calls this for every model it schedules
    (models registered without configuration included). Called as well for the
    configured models when a dispatcher is built and for every model the runtime serves,
    in every process: one that takes the lease later counts on from 0."""
    ServingMetrics.start_at_zero(metrics.events, *((model, event) for event in COUNTED_EVENTS))
    ServingMetrics.start_at_zero(metrics.notifications, *((model, event) for event in EVENT_TYPES))


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    action: str
    status: Literal[
        "taken", "suppressed", "duplicate", "none", "deferred", "refused", "pending_approval"
    ]
    reason: str
    job_id: int | None = None
    # why a suppressed action was: "quota", "cooldown" or "error"
    cause: str | None = None

    @property
    def final(self) -> bool:
        """Whether the trigger is settled: the action was taken, had been taken already,
        or there is none. A suppressed action (quota, cool-down) is still owed, and the
        same trigger seen again later may get it."""
        return self.status in SETTLED

    def describe(self) -> str:
        job = f" (job {self.job_id})" if self.job_id is not None else ""
        return f"{self.action} {self.status}{job}: {self.reason}"


def owed_by_its_action(store: Store, model: str, fired: Event) -> bool | None:
    """Whether the retune the event ``fired`` (the newest of its type) caused is still
    owed, as its action event says: ``True`` when the quota suppressed it, ``False`` when
    the action settled it or a cool-down suppressed it, ``None`` when no action event was
    recorded after it (the caller then asks whether its job was queued at all)."""
    outcome = store.last_action(model, trigger=fired.type, outcomes=OUTCOMES)
    if outcome is None or outcome.id < fired.id:
        return None
    return outcome.type == "action_suppressed" and outcome.payload.get("cause") == "quota"


def _event_key(fired: Event) -> str:
    """The dedupe key of the retune job the event ``fired`` causes when its caller gave
    none: unique, as the event's id is, and unlike any key a caller gives (``alert:``,
    ``comparison:``, ``srm:``), none of which starts with an event type and a colon."""
    return f"{fired.type}:{fired.id}"


def _queued_for(job: JobRow, fired: Event) -> bool:
    """Whether ``job`` is the retune job the event ``fired`` caused (see
    :meth:`Dispatcher.owed`)."""
    if job.dedupe_key == _event_key(fired):
        return True
    if job.dedupe_key is not None and job.dedupe_key.startswith(f"{fired.type}:"):
        return False  # another event's of the same type
    return (
        job.trigger == {"event": fired.type, **fired.payload}
        and job.created_at >= fired.created_at - _CLOCK_SKEW
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        # the events and notices are counted from the store by the scheduler's leader,
        # not here: a command's registry (``tunewatch compare``) is never scraped
        self.metrics = metrics
        if metrics is not None:
            for model in config.models:
                count_events_from_zero(metrics, model.name)

    def handle(
        self,
        model: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
        actor: str = "system",
        recorded: Callable[[Event], None] | None = None,
    ) -> ActionOutcome:
        """Record ``event`` for ``model`` and carry out (or suppress) its action; raises
        ``NotFoundError`` for a model that is not registered, recording nothing.
        ``recorded`` is called with the event once it is written, before its action: a
        caller whose dispatch then fails knows the event stands.

        A retune's job is deduplicated by ``dedupe_key`` or, without one, by the event
        recorded (``{event}:{id}``, the key :meth:`retry` gives it too): :meth:`owed`
        finds it by that key, and a retry queues no second job, whatever the clocks say.

        The event, the job and the action event are written one after another: a failure
        after the event (the store unavailable as the job is queued) raises and leaves the
        event with neither a job nor an action event. An evaluation policy takes such a
        retune as still owed (:mod:`tunewatch._evaluation_events`); an alert's episode is
        left owed, and the next delivery completes its action without recording the alert
        again (:meth:`queue_owed`, :mod:`tunewatch.api._alerts`); the standing schedule's
        is tried again (:meth:`owed`, :meth:`retry`). A manual retune's job is
        written with its ``request_retune`` audit entry, in one transaction: when the entry
        cannot be written, no job is queued either, and the caller's retry queues one."""
        self.store.get_model(model)
        fired = self.store.add_event(model=model, type=event, payload=dict(payload))
        if recorded is not None:
            recorded(fired)
        return self._act(model, fired, payload, dedupe_key=dedupe_key, actor=actor)

    def handle_after(
        self,
        model: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        last: Event | None,
        actor: str = "system",
    ) -> ActionOutcome | None:
        """:meth:`handle` for an event decided on ``last``, the newest ``event`` of
        ``model`` when the caller read it (``None``: there was none): the event is recorded,
        and its action carried out, only if ``last`` is still the newest of its type, read
        and written in one serialised step (:meth:`Store.add_event_after`). Else returns
        ``None``, recording nothing: another process (a replica, ``tunewatch evaluate``)
        decided on the same history and raised it first."""
        self.store.get_model(model)
        fired = self.store.add_event_after(
            model=model,
            type=event,
            payload=dict(payload),
            last=last.id if last is not None else None,
        )
        if fired is None:
            logger.info("model=%s event=%s: raised meanwhile by another process", model, event)
            return None
        return self._act(model, fired, payload, dedupe_key=None, actor=actor)

    def _act(
        self,
        model: str,
        fired: Event,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None,
        actor: str,
    ) -> ActionOutcome:
        """Carry out (or suppress) the action the event ``fired``, just recorded, causes."""
        event = fired.type
        trigger = self.config.trigger(model, event)
        if trigger is None:
            return ActionOutcome("none", "none", f"no trigger configured for {event}")
        if trigger.do == "promote":
            # carried out by the comparison loop, whose guardrails and governance may
            # refuse it or send it for approval: it records the outcome (see record)
            return ActionOutcome(
                "promote", "deferred", f"{event}: the comparison loop decides the promotion"
            )
        requester = actor if event == "manual" else None
        if trigger.do == "retune":
            key = dedupe_key if dedupe_key is not None else _event_key(fired)
            outcome = self._retune(
                model, event, payload, trigger.cooldown_minutes, key, requester=requester
            )
        else:  # notify: its action event, stored, is counted by the scheduler's leader
            outcome = ActionOutcome(
                trigger.do,
                "taken",
                f"{event} recorded; the scheduler's leader counts it in "
                "tunewatch_notifications_total (the TunewatchNotification alert)",
            )
        self.record(model, event, outcome, actor=actor)
        if requester is not None and outcome.job_id is None:
            # nothing queued: audited on its own (a job's entry was written with the job)
            self.store.append_audit(
                actor=requester,
                action="request_retune",
                target=model,
                details=_request_details(payload, outcome),
            )
        return outcome

    def owed(self, model: str, event: str) -> Event | None:
        """The newest ``event`` of ``model`` if the retune it caused is still owed, else
        ``None``. It is owed when the quota suppressed it, or when its job was never
        queued: the dispatch failed after the event was recorded (the store failed, the
        process died), leaving neither a job nor an action event. A retune the trigger's
        cool-down suppressed is not owed (the model was just retuned), nor is an event
        whose trigger is not a retune, nor one whose action event was lost after its job
        was queued. Read from the store alone, so a restarted or new leader knows it.

        Its job is the one keyed by the event (``{event}:{id}``, see :meth:`handle`), not
        any queued after it: the event is stamped by its host's clock and the job by the
        database's, and a host a few ms ahead made the job queued just after the event
        look older than it, the retune still owed, and its retry queue a second job. A
        job with another key (one the caller of :meth:`handle` gave: ``srm:...``) or none
        (queued by an older version) counts when its trigger is the event's and it was
        queued no more than ``_CLOCK_SKEW`` before the event, by the two clocks."""
        trigger = self.config.trigger(model, event)
        if trigger is None or trigger.do != "retune":
            return None
        fired = self.store.list_events(model=model, type=event, limit=1)
        if not fired:
            return None
        owed = owed_by_its_action(self.store, model, fired[0])
        if owed is not None:
            return fired[0] if owed else None
        newest = self.store.list_jobs(model=model, limit=_JOBS_SINCE_EVENT)
        queued = any(_queued_for(job, fired[0]) for job in newest)
        return None if queued else fired[0]

    def retry(
        self,
        model: str,
        fired: Event,
        *,
        actor: str = "system",
        dedupe_key: str | None = None,
    ) -> ActionOutcome:
        """Try again to queue the retune ``fired`` (an event :meth:`owed` returned, or one
        a comparison test handed over) still owes, without recording the event again. The
        quota suppressing it again records nothing, so retrying often adds no events; any
        other outcome is recorded and settles the event. Its job's dedupe key is the
        event's, or ``dedupe_key`` (the one :meth:`handle` was given for it), so a retry
        whose action event was lost queues no second job."""
        outcome = self.queue_owed(
            model,
            fired.type,
            fired.payload,
            dedupe_key=dedupe_key if dedupe_key is not None else _event_key(fired),
        )
        if outcome.cause == "quota":
            logger.debug(
                "model=%s event=%d still owes a retune: %s", model, fired.id, outcome.reason
            )
        else:
            self.record(model, fired.type, outcome, actor=actor)
        return outcome

    def queue_owed(
        self, model: str, event: str, payload: Mapping[str, Any], *, dedupe_key: str
    ) -> ActionOutcome:
        """Try again to queue the retune an ``event`` recorded before (with ``payload``)
        still owes, recording nothing: the caller records the outcome (:meth:`record`) once
        it settles, as :meth:`retry` does. The job's ``dedupe_key`` is the one the first
        attempt was given, so no attempt queues a second job. A notice (``do: notify``)
        owes only its action event, whose write failed: the recorded event is the notice."""
        trigger = self.config.trigger(model, event)
        if trigger is not None and trigger.do == "notify":
            return ActionOutcome(trigger.do, "taken", f"{event} recorded for {trigger.do}")
        if trigger is None or trigger.do != "retune":
            return ActionOutcome("none", "none", f"no retune configured for {event}")
        return self._retune(model, event, payload, trigger.cooldown_minutes, dedupe_key)

    def record(self, model: str, event: str, outcome: ActionOutcome, *, actor: str) -> None:
        """Record what became of the action ``event`` caused: ``action_<status>``."""
        self.store.add_event(
            model=model,
            type=f"action_{outcome.status}",
            payload={
                "action": outcome.action,
                "trigger": event,
                "reason": outcome.reason,
                "job": outcome.job_id,
                "actor": actor,
                **({"cause": outcome.cause} if outcome.cause is not None else {}),
            },
        )
        if outcome.job_id is None:
            logger.info("model=%s event=%s -> %s", model, event, outcome.describe())
            return
        logger.info(  # the job's id as the launcher's and the workers' lines give it
            "job=%d model=%s event=%s -> %s %s: %s",
            outcome.job_id,
            model,
            event,
            outcome.action,
            outcome.status,
            outcome.reason,
        )

    def record_promotion(
        self,
        model: str,
        status: Literal["taken", "refused", "pending_approval"],
        reason: str,
        *,
        actor: str,
    ) -> ActionOutcome:
        """Record what became of a deferred ``do: promote`` (on challenger_better)."""
        outcome = ActionOutcome("promote", status, reason)
        self.record(model, "challenger_better", outcome, actor=actor)
        return outcome

    def _retune(
        self,
        model: str,
        event: str,
        payload: Mapping[str, Any],
        cooldown_min: float,
        dedupe_key: str | None,
        *,
        requester: str | None = None,
    ) -> ActionOutcome:
        """Queue the retune ``event`` causes: a duplicate of the model's job still queued
        or running, if any, for every trigger (a manual retune too). The trigger's
        cool-down counts every job of the model but, for the ``schedule`` event, the jobs
        the schedule queued: it sets its own cadence, and its run, fired a period after
        the last, queued a few ms either side of a cool-down as long as the period
        (measured from the last run's job), so half the runs were lost. Another retune
        (drift, an alert, a manual one) within the cool-down still holds it back, and the
        schedule's jobs still hold back every other trigger's. A ``requester``
        (someone asked for it: a manual retune) is named in the job's trigger (``actor``),
        and the job is written with its ``request_retune`` audit entry, by the requester,
        in one transaction."""
        # A job already queued with ``dedupe_key``, or any of the model's still queued or
        # running, is found by create_job (under its lock, before the quota and the
        # cool-down): a duplicate, whatever the trigger's cool-down (none for schedule and
        # manual, whose second job beside the first took another model's quota slot).
        champion = self.store.champion(model)
        trigger = {"event": event, **dict(payload)}
        audit = None
        if requester is not None:
            trigger["actor"] = requester
            audit = JobAudit(
                actor=requester,
                action="request_retune",
                target=model,
                details=lambda job, created: _request_details(
                    payload, _queued(event, job, created)
                ),
            )
        try:
            job, created = self.store.create_job(
                model=model,
                kind="retune",
                trigger=trigger,
                # the champion whose reference the job trains on, whoever serves later
                spec={"champion_version": champion.version if champion else None},
                dedupe_key=dedupe_key,
                max_active=self.config.tuning.max_concurrent_jobs,
                # checked with the insert, so that simultaneous triggers queue one job, and
                # by the database's clock, which every host queueing jobs shares; a failed
                # or cancelled job holds no cool-down, nor, for a scheduled run, the
                # schedule's own jobs
                cooldown=timedelta(minutes=cooldown_min) if cooldown_min > 0 else None,
                cooldown_ignores="schedule" if event == "schedule" else None,
                one_active=True,
                audit=audit,
            )
        except ConflictError as exc:
            if exc.code == "cooldown":
                reason, cause = f"{exc.message} ({cooldown_min} min)", "cooldown"
            elif exc.code == "quota":
                reason, cause = exc.message, "quota"
            else:
                reason, cause = f"could not queue: {exc.message}", "error"
            return ActionOutcome("retune", "suppressed", reason, cause=cause)
        return _queued(event, job, created)


def _queued(event: str, job: JobRow, created: bool) -> ActionOutcome:
    """The outcome of a retune whose ``job`` was queued now (``created``) or before."""
    if not created:
        return ActionOutcome("retune", "duplicate", f"already handled by job {job.id}", job.id)
    return ActionOutcome("retune", "taken", f"queued job {job.id} for {event}", job.id)


def _request_details(payload: Mapping[str, Any], outcome: ActionOutcome) -> dict[str, Any]:
    """A retune someone asked for goes into the audit log (``request_retune``): who (the
    entry's actor), why and what became of it. The events held it alone, and they are
    not the hash-chained log a regulated model's reviewers read."""
    details: dict[str, Any] = {
        "reason": payload.get("reason"),
        "status": outcome.status,
        "job": outcome.job_id,
    }
    if outcome.status != "taken":
        details["why"] = outcome.reason
    return details
