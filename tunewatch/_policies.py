"""Policies turn evaluation results into events, with hysteresis and cool-down.

A policy is stateless: it decides from the stored evaluations (the one stored last
first: not by their ``window_end``, the evaluating host's clock, which may step back;
see :mod:`tunewatch._evaluation_history`) and the time of its last event (one whose
retune the job quota suppressed counts too: its retune is owed, and tried again without
a new event, see :mod:`tunewatch._evaluation_events`), so a restarted daemon decides
exactly as before. An event rests on new evidence only: it fires on a run whose own
verdict of the kind measured and alarmed, with a streak of windows whose requests came
after those the policy's last event rested on (told by the requests' own times, not by
the event's: two hosts' clocks), and never for a kind switched off (see :func:`decide`).

Hysteresis counts windows of data, not runs: each run re-reads the newest requests, so
without new traffic (or with a window longer than the interval) consecutive runs judge
the same requests, and counting each run would let one drifted batch meet
``consecutive: 2`` on its own. See :func:`decide`. A policy reads a bounded number of
its kind's newest verdicts (:attr:`EventPolicy.lookback`): a streak must complete within
them, so a run costs the same however long the model's history, and a streak never
bridges a long stretch of runs that could not measure.

A streak counts only verdicts judged under the settings in force: each measured verdict
records a fingerprint of the settings its alarm depends on (:class:`AlarmSettings`), and
an earlier verdict whose fingerprint differs from the current one ends the streak like a
measured window that did not alarm (held as ``settings_changed``). A verdict stored
before verdicts recorded one counts as it did. See :func:`decide`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from monitor.objectives import ObjectiveError, decision_threshold, make_objective
from tunewatch.store import EvaluationRow

if TYPE_CHECKING:
    from tunewatch._config import EvaluationConfig
    from tunewatch._config_evaluation import (
        DecayEvaluationConfig,
        DriftEvaluationConfig,
        EstimateEvaluationConfig,
    )
    from tunewatch._config_model import ObjectiveConfig


LOOKBACK_RUNS = 100
"""Verdicts a policy reads per window of its streak, beyond the runs a window of fixed
duration takes to renew (:attr:`EventPolicy.renewal_runs`): 8 h 20 min of 5-minute runs."""


SETTINGS = "settings"
SETTINGS_FINGERPRINT = "settings_fingerprint"
"""Payload keys of the settings a verdict's alarm was judged under (a JSON object) and
their fingerprint (:attr:`AlarmSettings.fingerprint`)."""


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """The settings a kind's alarm depends on, as canonical JSON (sorted keys): a verdict
    records them and their fingerprint, and a policy counts towards its streak only the
    verdicts judged under the settings in force (see :func:`decide`)."""

    canonical: str

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> AlarmSettings:
        return cls(json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False))

    @property
    def values(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.canonical)
        return loaded

    @property
    def fingerprint(self) -> str:
        """A short stable hash of :attr:`canonical`: the same settings, the same hash, in
        every process and release that writes them alike."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:16]

    def payload(self) -> dict[str, Any]:
        """The verdict payload's keys recording these settings."""
        return {SETTINGS: self.values, SETTINGS_FINGERPRINT: self.fingerprint}

    def judged(self, payload: Mapping[str, Any]) -> bool | None:
        """Whether the verdict of ``payload`` was judged under these settings, as far as
        it recorded them: a setting it did not record (a release recording fewer wrote it)
        is not held against it, so an upgrade alone ends no streak. ``None`` for one
        stored before verdicts recorded their settings."""
        recorded = payload.get(SETTINGS_FINGERPRINT)
        if not isinstance(recorded, str):
            return None
        return recorded == self.fingerprint or (
            isinstance(payload.get(SETTINGS), dict) and not self.changes(payload)
        )

    def changes(self, payload: Mapping[str, Any]) -> list[str]:
        """What changed since the verdict of ``payload`` was judged, one ``setting: old ->
        new`` each, of the settings it recorded (sorted by setting)."""
        old = payload.get(SETTINGS)
        if not isinstance(old, dict):
            return []
        new = self.values
        return [
            f"{key}: {_shown(old[key])} -> {_shown(new.get(key))}"
            for key in sorted(old)
            if old[key] != new.get(key)
        ]


def _shown(value: object) -> str:
    return "unset" if value is None else json.dumps(value, sort_keys=True)


def drift_settings(drift: DriftEvaluationConfig) -> AlarmSettings:
    """What a drift verdict's alarm depends on: the dataset rule and its level (the share
    threshold for ``share``; ``alpha``, which every rule's distances are floored at, for
    all), and each configured column's method and threshold. The reference is the
    champion's, fixed when it registered: a streak never spans two champions."""
    values: dict[str, Any] = {
        "dataset_rule": drift.dataset_rule,
        "alpha": drift.alpha,
        "columns": {
            name: {"method": c.method, "threshold": c.threshold}
            for name, c in drift.columns.items()
        },
    }
    if drift.dataset_rule == "share":
        values["share_threshold"] = drift.share_threshold
    return AlarmSettings.of(values)


def decay_settings(objective: ObjectiveConfig, decay: DecayEvaluationConfig) -> AlarmSettings:
    """What a decay verdict's alarm depends on: the objective and its parameters, the
    threshold (or, unset, the ``tolerance`` its default is 5 of), ``horizon_days``,
    within which the projected crossing alarms, and the windows the trend is fitted on
    (``window_s``, ``maturity_s``, ``horizon_windows``, ``min_windows``)."""
    values: dict[str, Any] = {
        "objective": objective.name,
        "objective_params": objective.params,
        "threshold": decay.threshold,
        "horizon_days": decay.horizon_days,
        "window_s": decay.window_s,
        "maturity_s": decay.maturity_s,
        "horizon_windows": decay.horizon_windows,
        "min_windows": decay.min_windows,
    }
    if decay.threshold is None:
        values["tolerance"] = decay.tolerance
    return AlarmSettings.of(values)


def estimate_settings(
    objective: ObjectiveConfig, estimate: EstimateEvaluationConfig
) -> AlarmSettings:
    """What an estimate verdict's alarm depends on: ``max_drop``, and the decision
    threshold the estimated accuracy is of (:func:`monitor.objectives.decision_threshold`:
    0.5 for an objective that decides nothing): switching log loss for Brier changes no
    estimate, and ended the streak when the objective itself was compared. ``None`` for
    an objective no binary model takes (a model with no estimate)."""
    try:
        threshold = decision_threshold(
            make_objective(objective.name, task="binary", **objective.params)
        )
    except ObjectiveError:
        threshold = None
    return AlarmSettings.of({"max_drop": estimate.max_drop, "decision_threshold": threshold})


@dataclass(frozen=True, kw_only=True)
class EventPolicy:
    """Raise ``event`` when ``consecutive`` windows of ``kind`` that share no request
    alarmed, with no measured window between them that did not, among the kind's newest
    ``lookback`` verdicts (see :func:`decide`).

    An evaluation alarms when its payload has ``"alarm": true``; ``insufficient_data``
    windows neither alarm nor break a streak, but count towards ``lookback``; the event
    fires only on a run whose newest verdict of ``kind`` measured and alarmed. After an
    event, the policy stays quiet for ``cooldown`` and counts only windows of requests
    received after those it rested on, whatever became of its action: one the quota
    suppressed is tried again while the alarm holds, without a new event. A policy whose
    kind is switched off (``enabled`` false: no verdict of it is stored) raises nothing.
    With ``settings`` (those in force), a verdict judged under others ends the streak.
    """

    event: str
    kind: str
    consecutive: int = 2
    cooldown: timedelta = timedelta(hours=6)
    enabled: bool = True
    # the runs a window of fixed duration takes to be replaced by one sharing no request
    # with it (0: a window of rows renews with traffic, which no setting tells)
    renewal_runs: int = 0
    # the settings in force that the kind's alarm depends on (None: not compared)
    settings: AlarmSettings | None = None

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"`consecutive` must be >= 1, got {self.consecutive}")
        if self.renewal_runs < 0:
            raise ValueError(f"`renewal_runs` must be >= 0, got {self.renewal_runs}")

    @property
    def lookback(self) -> int:
        """How many of the kind's newest verdicts a decision reads at most:
        :data:`LOOKBACK_RUNS` per window of the streak, and ``renewal_runs`` more before
        each window after the newest."""
        return self.consecutive * LOOKBACK_RUNS + (self.consecutive - 1) * self.renewal_runs


FIRST_REQUEST = "first_request_at"
LAST_REQUEST = "last_request_at"
"""Payload keys (ISO times) of the oldest and newest request an evaluation judged."""

LABEL_FIRST_REQUEST = "label_first_request_at"
LABEL_LAST_REQUEST = "label_last_request_at"
"""Payload keys (ISO times) of the oldest and newest request of a drift verdict's label
window when it found the label drifted: that window is its own, a maturity behind."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """The newest request of the windows an event rested on (the newest window of its
    streak), and of that window's label window when it found the label drifted. Stored
    in the event's payload under the evaluation's own keys (:data:`LAST_REQUEST`,
    :data:`LABEL_LAST_REQUEST`): both times come from the clock that stamped the
    requests, so a later window is told new by them whatever the clock of the host
    that recorded the event."""

    last_request_at: datetime
    label_last_request_at: datetime | None = None

    def payload(self) -> dict[str, str]:
        """The event payload's keys for this evidence."""
        keys = {LAST_REQUEST: self.last_request_at.isoformat()}
        if self.label_last_request_at is not None:
            keys[LABEL_LAST_REQUEST] = self.label_last_request_at.isoformat()
        return keys

    @classmethod
    def of_event(cls, payload: Mapping[str, Any]) -> Evidence | None:
        """The evidence an event's ``payload`` records, ``None`` for one stored before
        events recorded it."""
        last, labels = (_time(payload.get(k)) for k in (LAST_REQUEST, LABEL_LAST_REQUEST))
        return cls(last, labels) if last is not None else None


Held = Literal[
    "switched_off",
    "lookback",
    "streak",
    "settings_changed",
    "newest",
    "not_new",
    "cooling_down",
]
"""Why a policy did not fire: its kind is switched off, no streak within the look-back,
too short a streak, too short a streak since the settings changed, the newest verdict
did not alarm, too few windows new since the last event, or the cool-down runs."""


@dataclass(frozen=True, slots=True)
class Decision:
    fire: bool
    reason: str
    streak: int
    # the look-back ended on a verdict that re-read the window counted last: windows of
    # the kind renew more slowly than the look-back reaches, so no streak can complete
    outgrown: bool = False
    # what the event rests on, when the streak's newest window recorded its requests
    rested_on: Evidence | None = None
    # why it did not fire (``None``: it fired)
    held: Held | None = None
    # the streak ended on a verdict judged under other settings: what changed since, as
    # far as it recorded them (``None``: it did not end so)
    settings_changed: tuple[str, ...] | None = None

    def summary(self, policy: EventPolicy) -> dict[str, str | int | bool]:
        """The decision as the run's verdict of ``policy.kind`` carries it (its
        ``policy`` key): the event, whether it fired, why (or why not), and the streak
        against the windows it needs."""
        return {
            "event": policy.event,
            "fired": self.fire,
            "reason": self.reason,
            "streak": self.streak,
            "consecutive": policy.consecutive,
        }


def stored_decision(payload: Mapping[str, object]) -> str | None:
    """What the policy reading a verdict made of it (its payload's ``policy`` key, see
    :meth:`Decision.summary`), in words: its event raised, held back while the alarm holds
    (and why), or not raised; ``None`` for a kind no policy reads, or a verdict stored
    before the policies decided."""
    policy = payload.get("policy")
    if not isinstance(policy, dict):
        return None
    if policy.get("fired"):
        verb = "raised"
    elif payload.get("alarm") and policy.get("streak", 0) >= policy.get("consecutive", 1):
        verb = "held"  # the alarm holds (it pages): say why no event follows
    else:
        verb = "not raised"
    return f"{policy.get('event')} {verb}: {policy.get('reason')}"


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def requests_span(
    evaluation: EvaluationRow, *, labels: bool = False
) -> tuple[datetime, datetime] | None:
    """When the oldest and the newest request behind ``evaluation`` were received (with
    ``labels``: those whose drifted labels it found), or ``None`` when it did not record
    them (rows stored before it did, or no label drift)."""
    keys = (LABEL_FIRST_REQUEST, LABEL_LAST_REQUEST) if labels else (FIRST_REQUEST, LAST_REQUEST)
    first, last = (_time(evaluation.payload.get(k)) for k in keys)
    return (first, last) if first is not None and last is not None else None


def decide(
    policy: EventPolicy,
    evaluations: Iterable[EvaluationRow],
    *,
    last_event_at: datetime | None,
    now: datetime,
    rested_on: Evidence | None = None,
) -> Decision:
    """Whether ``policy`` fires now, and why (or why not).

    ``evaluations`` are read newest first, the one stored last first (not by
    ``window_end``: see :mod:`tunewatch._evaluation_history`), and only as far as the
    decision needs (an iterator may page through the store). The streak counts windows that share no
    request: an alarming evaluation counts when its newest request came before the
    oldest request of the window counted after it. One that overlaps that window is
    passed over: it judged largely the same requests — the same window read again with
    no traffic between runs or two manual evaluations, a ``window_s`` longer than the
    interval, ``window_rows`` more than the traffic between runs — and is no fresh
    evidence. A measured evaluation that did not alarm ends the streak, overlapping or
    not. So ``consecutive: 2`` means what it says: two windows of different requests
    both alarmed (and every run between them too), which one drifted batch, however
    often it is read, cannot do. Evaluations that did not record their requests
    (stored before they did) count one each, as they used to. Drift tests the label on
    a window of its own, a maturity behind: when two verdicts both found the label
    drifted, they also share requests when their label windows overlap (traffic that
    grew since can renew the window a day ahead faster than the labels').

    The event rests on new evidence: it fires only when the newest verdict of the kind
    measured and alarmed (a run that could not measure raises nothing, whatever the
    verdicts before it), and only when the streak's ``consecutive`` windows hold requests
    received after those the last event rested on (``rested_on``: its oldest request,
    and its label window's when both found the label drifted, later than the newest of
    the last event's), or, for an event that did not record them, received after
    ``last_event_at`` (a window that did not record them: judged after it). Without
    that, the windows that had fired the event fired it again once the cool-down ran
    out: read again by runs without new traffic, or behind runs that could not measure.
    ``rested_on`` and the windows are both stamped by the scoring host's clock;
    ``last_event_at`` by the evaluating host's, ahead or behind, and only times the
    cool-down. ``streak`` still counts them all: the alarm holds while they do. A
    policy whose kind is switched off decides nothing.

    With ``policy.settings``, a measured verdict that recorded other settings (its
    fingerprint, :class:`AlarmSettings`) ends the streak as one that did not alarm: it
    alarmed, or did not, on a rule no longer in force (a share threshold relaxed since,
    another objective), and joined to a window of the new settings it raised the event
    on one window of them. The decision says so (``settings_changed``: what changed, as
    far as the verdict recorded it). One stored before verdicts recorded their settings
    counts as it did: an upgrade resets no streak, and such verdicts leave the
    look-back as newer ones are stored.

    Only the newest ``policy.lookback`` evaluations are read: reaching that many ends the
    streak. Without the bound each run paged back through every run that could not
    measure (a model without traffic stores one per run), and joined an alarm from before
    weeks of silence with today's; a window that is read again for longer than the
    look-back (``window_rows`` filling slowly) cannot complete a streak, which the
    decision reports as ``outgrown``.
    """
    if not policy.enabled:
        return Decision(False, f"{policy.kind} evaluation is switched off", 0, held="switched_off")
    streak = 0
    fresh = 0  # counted windows of requests received after the last event
    newest: EvaluationRow | None = None  # the newest verdict of the kind
    counted_from: datetime | None = None  # the oldest request of the last counted window
    labels_from: datetime | None = None  # ... of its label window, when the label drifted
    evidence: Evidence | None = None  # the newest counted window's newest requests
    read = 0
    rereads = False  # the last evaluation read shared requests with the window counted
    changed: tuple[str, ...] | None = None  # the settings changed since the verdict read last
    for e in itertools.islice(evaluations, policy.lookback):  # newest first
        read += 1
        rereads = False
        if e.kind != policy.kind:
            continue
        if newest is None:
            newest = e
        if e.status == "insufficient_data":
            continue
        if not e.payload.get("alarm", False):
            break
        if policy.settings is not None and policy.settings.judged(e.payload) is False:
            changed = tuple(policy.settings.changes(e.payload))
            break  # judged under other settings: no measure of the alarm in force
        span = requests_span(e)
        labels = requests_span(e, labels=True)
        if (counted_from is not None and span is not None and span[1] >= counted_from) or (
            labels_from is not None and labels is not None and labels[1] >= labels_from
        ):
            rereads = True
            continue  # shares requests with the window counted after it
        streak += 1
        fresh += _after(e, span, labels, last_event_at, rested_on)
        if streak == 1 and span is not None:
            evidence = Evidence(span[1], labels[1] if labels is not None else None)
        counted_from = span[0] if span is not None else None
        labels_from = labels[0] if labels is not None else None
        if streak >= policy.consecutive:
            break
    else:
        if read == policy.lookback and streak < policy.consecutive:
            return Decision(
                False,
                f"{streak}/{policy.consecutive} consecutive alarming windows within the "
                f"newest {policy.lookback} {policy.kind} verdicts",
                streak,
                outgrown=rereads,
                held="lookback",
            )
    if streak < policy.consecutive and changed is not None:
        return Decision(
            False,
            f"{streak}/{policy.consecutive} consecutive alarming windows since the "
            f"{policy.kind} settings changed" + (f" ({'; '.join(changed)})" if changed else ""),
            streak,
            held="settings_changed",
            settings_changed=changed,
        )
    if streak < policy.consecutive:
        return Decision(
            False,
            f"{streak}/{policy.consecutive} consecutive alarming windows",
            streak,
            held="streak",
        )
    assert newest is not None  # a streak has a verdict
    if not _alarmed(newest):
        return Decision(
            False,
            f"the newest {policy.kind} verdict "
            + ("did not alarm" if newest.status == "ok" else f"is {newest.status}"),
            streak,
            held="newest",
        )
    if fresh < policy.consecutive:
        return Decision(
            False,
            f"{fresh}/{policy.consecutive} consecutive alarming windows since the last event",
            streak,
            held="not_new",
        )
    if last_event_at is not None and now - last_event_at < policy.cooldown:
        # whole seconds, rounded up: never "another 0:00:00" while it still runs
        left = timedelta(
            seconds=math.ceil((policy.cooldown - (now - last_event_at)).total_seconds())
        )
        return Decision(False, f"cooling down for another {left}", streak, held="cooling_down")
    return Decision(
        True, f"{streak} consecutive alarming {policy.kind} windows", streak, rested_on=evidence
    )


def _alarmed(evaluation: EvaluationRow) -> bool:
    """Whether ``evaluation`` measured and alarmed (what ``tunewatch_alarm`` holds on)."""
    return evaluation.status == "ok" and bool(evaluation.payload.get("alarm", False))


def _after(
    evaluation: EvaluationRow,
    span: tuple[datetime, datetime] | None,
    labels: tuple[datetime, datetime] | None,
    since: datetime | None,
    rested_on: Evidence | None,
) -> bool:
    """Whether ``evaluation`` judged only requests received after those the last event
    rested on (``rested_on``; its label window too, when both recorded one); for an event
    that did not record them, received after ``since`` (the last event: the evaluation it
    was raised on judged requests up to then); one that did not record its requests, when
    it ran after ``since``."""
    if since is None:
        return True
    if rested_on is not None and span is not None:
        label_last = rested_on.label_last_request_at
        return span[0] > rested_on.last_request_at and (
            labels is None or label_last is None or labels[0] > label_last
        )
    return (span[0] if span is not None else evaluation.window_end) > since


def evaluation_policies(
    ev: EvaluationConfig, *, objective: ObjectiveConfig | None = None
) -> list[EventPolicy]:
    """The events a model's evaluation raises, with its configured hysteresis and cool-down,
    each counting only verdicts judged under the settings of ``ev`` and ``objective``
    (without it, those of decay and the estimate are not compared).

    Each reads :data:`LOOKBACK_RUNS` verdicts per window of its streak, plus, before each
    window after the newest, the runs a window of fixed duration takes to renew:
    ``window_s`` for the kinds judging the current window, ``decay.window_s`` for decay
    (its verdicts judge the newest matured one). A ``window_rows`` window renews with
    traffic, which the config does not tell. A kind switched off gives a policy that
    raises nothing (and whose alarm gauge drops to 0)."""
    current = _renewal(ev.window_s, ev.interval_s)
    return [
        EventPolicy(
            event="drift_detected",
            kind="drift",
            consecutive=ev.drift.consecutive,
            cooldown=timedelta(minutes=ev.drift.cooldown_minutes),
            enabled=ev.drift.enabled,
            renewal_runs=current,
            settings=drift_settings(ev.drift),
        ),
        EventPolicy(
            event="decay_detected",
            kind="decay",
            consecutive=ev.decay.consecutive,
            cooldown=timedelta(minutes=ev.decay.cooldown_minutes),
            enabled=ev.decay.enabled,
            renewal_runs=_renewal(ev.decay.window_s, ev.interval_s),
            settings=decay_settings(objective, ev.decay) if objective is not None else None,
        ),
        EventPolicy(
            event="estimate_dropped",
            kind="estimate",
            consecutive=ev.estimate.consecutive,
            cooldown=timedelta(minutes=ev.estimate.cooldown_minutes),
            enabled=ev.estimate.enabled,
            renewal_runs=current,
            settings=estimate_settings(objective, ev.estimate) if objective is not None else None,
        ),
        EventPolicy(
            event="label_delay_high",
            kind="labels",
            consecutive=1,
            cooldown=timedelta(days=1),
            renewal_runs=current,
        ),
    ]


def _renewal(window_s: float | None, interval_s: float) -> int:
    """The runs a window of ``window_s`` takes to be replaced by one sharing no request
    with it (none for a window of rows)."""
    return math.ceil(window_s / interval_s) if window_s is not None else 0
