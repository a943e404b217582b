"""From stored verdicts to events: each policy's streak, cool-down and alarm gauge.

After an evaluation stores its verdicts, every policy of the model's evaluation config
(:func:`tunewatch._policies.evaluation_policies`) reads the champion's recent verdicts
of its kind in the order they were stored (:mod:`tunewatch._evaluation_history`),
decides with :func:`tunewatch._policies.decide` (hysteresis over windows that share no
request, cool-down), exports ``tunewatch_alarm`` and hands an event that fires to the
dispatcher. While the retune of the policy's last event is owed (the quota
suppressed it), each run on which the alarm holds tries it again without recording the
event again (:meth:`tunewatch._actions.Dispatcher.retry`), as an alert's episode and the
standing schedule do: one episode, one event and one suppression.

The event is recorded only if the policy's last event is still the one the decision read
(:meth:`tunewatch._actions.Dispatcher.handle_after`), checked and written in one
serialised step in the store: two processes evaluating the model at once (the scheduler's
leader and ``tunewatch evaluate``, or a replica's ``POST /evaluate``), each deciding on
the history before either's event, raise it, and queue its retune, once.

A process that takes the scheduler lease exports the figures and alarms of each model's
latest stored evaluations at once (:func:`export_stored`), deciding nothing: a new leader
exported none until its first run, an interval after the last, and every alert on them
resolved and fired again as a new episode at each deploy or failover.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime

from monitor import ServingMetrics
from monitor.objectives import make_objective
from tunewatch._actions import SETTLED, Dispatcher, owed_by_its_action
from tunewatch._config import ModelConfig
from tunewatch._config_evaluation import drift_columns
from tunewatch._evaluation_estimate import export_estimate, forget_estimate
from tunewatch._evaluation_history import latest as stored_last
from tunewatch._evaluation_history import verdicts
from tunewatch._evaluation_telemetry import export_latency_p99
from tunewatch._objective_display import objective_params
from tunewatch._policies import (
    Decision,
    EventPolicy,
    Evidence,
    Held,
    decide,
    evaluation_policies,
)
from tunewatch.store import EvaluationRow, Event, ModelRow, Store, VersionRow

logger = logging.getLogger(__name__)

# A policy event's job, if queued, is among the model's newest jobs: the policy's
# cool-down keeps its events hours apart, and the quota keeps jobs few.
_JOBS_SINCE_EVENT = 50


def _decision(
    store: Store,
    name: str,
    policy: EventPolicy,
    version: int | None,
    *,
    now: datetime,
    last_event_at: datetime | None,
    rested_on: Evidence | None = None,
) -> tuple[Decision, EvaluationRow | None]:
    """``policy``'s decision over the champion's stored verdicts, and the newest of them
    (the one stored last: :mod:`tunewatch._evaluation_history`)."""
    history = verdicts(
        store, name, policy.kind, version, first=policy.consecutive + 20, most=policy.lookback
    )
    latest = next(history, None)
    decision = decide(
        policy,
        itertools.chain([latest], history) if latest is not None else (),
        now=now,
        last_event_at=last_event_at,
        rested_on=rested_on,
    )
    return decision, latest


def _holds(policy: EventPolicy, decision: Decision, row: EvaluationRow | None) -> bool:
    """``tunewatch_alarm``: 1 only while ``row``, the newest verdict of the policy's kind,
    measured and alarmed and completed the streak (one that could not measure, or a
    kind switched off, is 0)."""
    return (
        row is not None
        and row.status == "ok"
        and bool(row.payload.get("alarm", False))
        and decision.streak >= policy.consecutive
    )


class PolicyEvents:
    """Decides a model's evaluation events after each run."""

    def __init__(self, *, store: Store, metrics: ServingMetrics, dispatcher: Dispatcher) -> None:
        self.store = store
        self.metrics = metrics
        self.dispatcher = dispatcher
        self._outgrown: set[tuple[str, str]] = set()  # (model, event) warned about
        # (model, event) -> why its alarming event is held back, as last logged
        self._held: dict[tuple[str, str], Held] = {}
        # (model, event, settings fingerprint) whose change of settings was logged
        self._changed: set[tuple[str, str, str]] = set()

    def _last_event(
        self, name: str, event: str
    ) -> tuple[Event | None, datetime | None, Event | None]:
        """The policy's last event (``None``: it never fired), its anchor, and its last
        event again when that event's retune is owed to a retry (else ``None``).

        The anchor is when the policy's cool-down started, and the time after which the
        windows of a new streak must have been received: its last event, whatever became
        of its retune. One the quota suppressed is owed, and the anchor all the same: its
        episode goes on, and the runs on which the alarm holds try the retune again
        silently (:meth:`Dispatcher.retry`); taken for no event, it let every alarming
        run raise the event and its suppression again while the quota stayed full. A
        retune the trigger's own cool-down suppressed is settled (the model was just
        retuned), as is an event
        with no action configured, or whose action event was lost after its job was
        queued. An event whose job was never queued at all, the dispatch having failed
        after the event was recorded (the store failed, the process died) and left
        neither a job nor an action event, does not count: the cool-down runs from the
        last event whose action settled, and the next alarming run raises the event anew
        (as a failed delivery releases an alert's episode)."""
        fired = self.store.list_events(model=name, type=event, limit=1)
        if not fired:
            return None, None, None
        last = fired[0]
        owed = owed_by_its_action(self.store, name, last)
        if owed:
            return last, last.created_at, last
        if owed is None and self._never_queued(name, last):
            settled = self.store.last_action(name, trigger=event, outcomes=SETTLED)
            return last, (settled.created_at if settled is not None else None), None
        return last, last.created_at, None

    def _never_queued(self, name: str, fired: Event) -> bool:
        """Whether ``fired``, an event with no action event after it, causes a retune whose
        job was never queued. The dispatcher queues the job with the event's own payload
        as its trigger (the evaluation that fired it), so the job, had it been queued, is
        among the model's newest."""
        trigger = self.dispatcher.config.trigger(name, fired.type)
        if trigger is None or trigger.do != "retune":
            return False
        queued = {"event": fired.type, **fired.payload}
        newest = self.store.list_jobs(model=name, limit=_JOBS_SINCE_EVENT)
        return not any(job.trigger == queued for job in newest)

    def decide(
        self,
        name: str,
        cfg: ModelConfig,
        now: datetime,
        current: dict[str, EvaluationRow],
        champion: VersionRow | None,
        *,
        actor: str = "system",
    ) -> None:
        """Raise the events whose policy fires now; export each policy's alarm state:
        1 only while this run's window of its kind measured and alarmed and completed the
        streak (a window that could not measure, or a kind switched off, is 0). Both
        follow :func:`tunewatch._policies.decide`: a streak counts windows that share no
        request. A policy whose last event's retune is owed (:meth:`_last_event`) and
        that does not fire tries that retune again while its alarm holds, recording
        nothing until it settles. ``actor`` (who asked for the run) is named on the
        action events."""
        version = champion.version if champion else None
        decided: list[
            tuple[EventPolicy, Event | None, Event | None, Decision, EvaluationRow | None]
        ] = []
        for policy in evaluation_policies(cfg.evaluation, objective=cfg.objective):
            last, anchor, owed = self._last_event(name, policy.event)
            # the requests the last event rested on, when it counts (is the anchor) and
            # recorded them: a new streak's must come after them (older events: after it)
            rested_on = (
                Evidence.of_event(last.payload)
                if last is not None and anchor == last.created_at
                else None
            )
            decision, latest = _decision(
                self.store,
                name,
                policy,
                version,
                now=now,
                last_event_at=anchor,
                rested_on=rested_on,
            )
            decided.append((policy, last, owed, decision, latest))
        # the run's verdict of each kind says what its policy made of it, stored on it
        # (the evaluations API, the dashboard) and returned to the caller (`tunewatch
        # evaluate`, POST /evaluate) before any action: a failed dispatch loses none
        summaries: dict[int, dict[str, str | int | bool]] = {}
        for policy, _, _, decision, _ in decided:
            row = current.get(policy.kind)
            if row is not None:
                row.payload["policy"] = summaries[row.id] = decision.summary(policy)
        if summaries:
            self.store.record_policy_decisions(summaries)
        for policy, last, owed, decision, latest in decided:
            self._warn_outgrown(name, policy.event, decision.outgrown, decision.reason)
            self._log_settings_changed(name, policy, decision)
            holds = _holds(policy, decision, current.get(policy.kind))
            self._log_held(name, policy.event, decision if holds else None)
            self.metrics.alarm.labels(name, policy.event).set(int(holds))
            if decision.fire:
                assert latest is not None  # a streak has an evaluation
                # raised only if ``last`` is still the policy's last event: another
                # process (a replica, `tunewatch evaluate`) deciding on the same history
                # at once raises it, and its action follows, once
                self.dispatcher.handle_after(
                    name,
                    policy.event,
                    {
                        "reason": decision.reason,
                        "evaluation": latest.id,
                        "window_end": latest.window_end.isoformat(),
                        **(decision.rested_on.payload() if decision.rested_on else {}),
                    },
                    last=last,
                    actor=actor,
                )
            elif owed is not None and holds:
                # the episode of the owed event goes on: its retune, not a new event
                self.dispatcher.retry(name, owed, actor=actor)

    def _log_held(self, name: str, event: str, decision: Decision | None) -> None:
        """Log at INFO why an alarm that holds (``decision``; ``None``: it does not) raised
        no event, once each time the reason changes: the alarm pages while no event, and
        so no retune, follows it (the cool-down, windows not new since the last event)."""
        key = (name, event)
        if decision is None or decision.held is None:
            self._held.pop(key, None)
        elif self._held.get(key) != decision.held:
            self._held[key] = decision.held
            logger.info(
                "model=%s event=%s held: the alarm holds but raises no event: %s",
                name,
                event,
                decision.reason,
            )

    def _log_settings_changed(self, name: str, policy: EventPolicy, decision: Decision) -> None:
        """Say at INFO, once per model, event and settings in this process, that the
        policy's streak ended on a verdict judged under other settings, and what changed
        as far as it recorded them: an alarm of the old settings no longer counts."""
        if decision.settings_changed is None or policy.settings is None:
            return
        key = (name, policy.event, policy.settings.fingerprint)
        if key in self._changed:
            return
        self._changed.add(key)
        logger.info(
            "model=%s event=%s: the %s settings changed since an earlier verdict (%s): "
            "verdicts judged under the old ones no longer count towards the streak (%d/%d)",
            name,
            policy.event,
            policy.kind,
            "; ".join(decision.settings_changed) or "what changed was not recorded",
            decision.streak,
            policy.consecutive,
        )

    def _warn_outgrown(self, name: str, event: str, outgrown: bool, reason: str) -> None:
        """Say once per process (and again after it recovers) that a policy's windows
        renew more slowly than its look-back reaches: no streak of more than one window
        can complete, so the event never fires."""
        key = (name, event)
        if not outgrown:
            self._outgrown.discard(key)
        elif key not in self._outgrown:
            self._outgrown.add(key)
            logger.warning(
                "model=%s event=%s: %s, the oldest of them still reading requests of "
                "the window counted last: its windows renew more slowly than the "
                "look-back reaches, so the event cannot fire; lower "
                "evaluation.window_rows, set window_s instead, or lower consecutive",
                name,
                event,
                reason,
            )


def export_stored(
    store: Store, metrics: ServingMetrics, model: ModelRow, cfg: ModelConfig, *, now: datetime
) -> None:
    """Export ``model``'s evaluation figures as its latest stored evaluations (those stored
    last) of the current champion left them, and each policy's alarm as the policy reads the stored
    verdicts (:func:`tunewatch._policies.decide`; the streak, and so the alarm, does not
    depend on the last event), raising and recording nothing: for a process that has just
    taken the scheduler lease, so that the series go on across a restart or a failover.

    A kind switched off, or whose latest verdict is of another version (the champion
    changed since), exports no figure and its alarm is 0, as its next run would say. The
    telemetry is per version, not per champion: its latest verdict, whatever champion it
    was stored under, exports the p99 of the versions still served (the line-up). A
    figure the verdict does not record is not exported: a drift score that was not
    finite (stored as null), the estimate's realised accuracy of a window whose labels
    had not come, the label delay of a verdict stored before it recorded its exported
    figure, and the p99 of a verdict stored before it read each role."""
    name = model.name
    champion = store.champion(name)
    version = champion.version if champion else None
    ev = cfg.evaluation
    enabled = {
        "drift": ev.drift.enabled,
        "decay": ev.decay.enabled,
        "estimate": ev.estimate.enabled and model.task == "binary",
        "labels": True,
    }
    latest: dict[str, EvaluationRow] = {}
    for policy in evaluation_policies(ev, objective=cfg.objective):
        decision, newest = _decision(store, name, policy, version, now=now, last_event_at=None)
        metrics.alarm.labels(name, policy.event).set(int(_holds(policy, decision, newest)))
        if newest is not None and enabled.get(policy.kind, False):
            latest[policy.kind] = newest
    metrics.forget(metrics.objective_realised, model=name, keep={str(version)})
    forget_estimate(metrics, name, keep={str(version)})
    _export_drift(metrics, model, latest.get("drift"))
    _export_decay(metrics, model, cfg, version, latest.get("decay"))
    estimate = latest.get("estimate")
    if estimate is not None and estimate.status == "ok":
        export_estimate(metrics, name, version, estimate.payload)
    else:
        forget_estimate(metrics, name)
    labels = latest.get("labels")
    coverage = None if labels is None else labels.payload.get("coverage")
    delay = None if labels is None else labels.payload.get("label_delay_s")
    for gauge, value in ((metrics.label_coverage, coverage), (metrics.label_delay, delay)):
        if value is None:
            metrics.forget(gauge, model=name)
        else:
            gauge.labels(name).set(value)
    # per version, not per champion: the latest verdict whatever champion it was stored
    # under, of the versions still served (a promotion dropped every version's p99 until
    # the next run, up to evaluation.interval_s later)
    telemetry = stored_last(store, name, "telemetry")
    measured = telemetry.payload.get("versions") if telemetry is not None else None
    lineup = store.version_lineup(name)
    served = {str(v) for v in (lineup.champion, *lineup.challengers) if v is not None}
    export_latency_p99(metrics, name, measured if isinstance(measured, dict) else {}, served=served)


def _export_drift(metrics: ServingMetrics, model: ModelRow, row: EvaluationRow | None) -> None:
    m = metrics
    if row is None or row.status != "ok":  # nothing was tested: no figure
        for gauge in (m.drift_share, m.drift_detected, m.feature_drift, m.feature_drifted):
            m.forget(gauge, model=model.name)
        return
    m.drift_share.labels(model.name).set(row.payload["drifted_share"])
    m.drift_detected.labels(model.name).set(int(bool(row.payload["alarm"])))
    tested = {
        c["column"]: (c["method"], c["statistic"], bool(c["drifted"]))
        for c in row.payload.get("columns", [])
        if c["status"] != "insufficient_data" and c["statistic"] is not None
    }
    m.set_feature_drift(model.name, {c: tested.get(c) for c in drift_columns(model.feature_names)})


def _export_decay(
    metrics: ServingMetrics,
    model: ModelRow,
    cfg: ModelConfig,
    version: int | None,
    row: EvaluationRow | None,
) -> None:
    """The realised objective of the newest matured window and the slope, signed so that
    > 0 is getting worse, of a verdict on the objective configured now (its name and, as
    the verdict recorded them, its parameters). A newest matured window without a value
    exports no realised objective, as the run did not: an older window's value is not
    held (:func:`tunewatch._evaluation_decay.decay_verdict`)."""
    objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
    payload = row.payload if row is not None else {}
    # its parameters too when the verdict recorded them (one of an older release recorded
    # the name only): a realised cost under another cost matrix is another figure
    recorded = payload.get("objective_params")
    same = payload.get("objective") == objective.name and (
        recorded is None or recorded == objective_params(objective)
    )
    windows = payload.get("windows") or [{}]
    realised = windows[-1].get("value")
    if same and realised is not None:
        metrics.objective_realised.labels(model.name, str(version), objective.name).set(realised)
    else:
        metrics.forget(metrics.objective_realised, model=model.name)
    slope = payload.get("slope_per_day")
    if same and slope is not None:
        sign = -1.0 if objective.greater_is_better else 1.0
        metrics.decay_slope.labels(model.name).set(sign * slope)
    else:
        metrics.forget(metrics.decay_slope, model=model.name)
