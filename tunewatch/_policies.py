"""Policies turn evaluation results into events, with hysteresis and cool-down.

A policy is stateless: it decides from the stored evaluations (newest first) and the
time of its last event (whose retune, if the job quota suppressed it, is still owed and
does not count), so a restarted daemon decides exactly as before.

Hysteresis counts windows of data, not runs: each run re-reads the newest requests, so
without new traffic (or with a window longer than the interval) consecutive runs judge
the same requests, and counting each run would let one drifted batch meet
``consecutive: 2`` on its own. See :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tunewatch.store import EvaluationRow

if TYPE_CHECKING:
    from tunewatch._config import EvaluationConfig


@dataclass(frozen=True, kw_only=True)
class EventPolicy:
    """Raise ``event`` when ``consecutive`` windows of ``kind`` that share no request
    alarmed, with no measured window between them that did not (see :func:`decide`).

    An evaluation alarms when its payload has ``"alarm": true``; ``insufficient_data``
    windows neither alarm nor break a streak. After an event whose action settled, the
    policy stays quiet for ``cooldown``; after one whose action the quota or the trigger's
    cool-down suppressed, the next alarming run raises the event again.
    """

    event: str
    kind: str
    consecutive: int = 2
    cooldown: timedelta = timedelta(hours=6)

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"`consecutive` must be >= 1, got {self.consecutive}")


@dataclass(frozen=True, slots=True)
class Decision:
    fire: bool
    reason: str
    streak: int


FIRST_REQUEST = "first_request_at"
LAST_REQUEST = "last_request_at"
"""Payload keys (ISO times) of the oldest and newest request an evaluation judged."""


def requests_span(evaluation: EvaluationRow) -> tuple[datetime, datetime] | None:
    """When the oldest and the newest request behind ``evaluation`` were received, or
    ``None`` when it did not record them (rows stored before it did)."""
    first, last = evaluation.payload.get(FIRST_REQUEST), evaluation.payload.get(LAST_REQUEST)
    if not isinstance(first, str) or not isinstance(last, str):
        return None
    try:
        return datetime.fromisoformat(first), datetime.fromisoformat(last)
    except ValueError:
        return None


def decide(
    policy: EventPolicy,
    evaluations: Iterable[EvaluationRow],
    *,
    last_event_at: datetime | None,
    now: datetime,
) -> Decision:
    """Whether ``policy`` fires now, and why (or why not).

    ``evaluations`` are read newest first, and only as far as the decision needs (an
    iterator may page through the store). The streak counts windows that share no
    request: an alarming evaluation counts when its newest request came before the
    oldest request of the window counted after it. One that overlaps that window is
    passed over: it judged largely the same requests — the same window read again with
    no traffic between runs or two manual evaluations, a ``window_s`` longer than the
    interval, ``window_rows`` more than the traffic between runs — and is no fresh
    evidence. A measured evaluation that did not alarm ends the streak, overlapping or
    not. So ``consecutive: 2`` means what it says: two windows of different requests
    both alarmed (and every run between them too), which one drifted batch, however
    often it is read, cannot do. Evaluations that did not record their requests
    (stored before they did) count one each, as they used to.
    """
    streak = 0
    counted_from: datetime | None = None  # the oldest request of the last counted window
    for e in evaluations:  # newest first
        if e.kind != policy.kind or e.status == "insufficient_data":
            continue
        if not e.payload.get("alarm", False):
            break
        span = requests_span(e)
        if counted_from is not None and span is not None and span[1] >= counted_from:
            continue  # shares requests with the window counted after it
        streak += 1
        counted_from = span[0] if span is not None else None
        if streak >= policy.consecutive:
            break
    if streak < policy.consecutive:
        return Decision(
            False, f"{streak}/{policy.consecutive} consecutive alarming windows", streak
        )
    if last_event_at is not None and now - last_event_at < policy.cooldown:
        left = policy.cooldown - (now - last_event_at)
        return Decision(False, f"cooling down for another {left}", streak)
    return Decision(True, f"{streak} consecutive alarming {policy.kind} windows", streak)


def evaluation_policies(ev: EvaluationConfig) -> list[EventPolicy]:
    """The events a model's evaluation raises, with its configured hysteresis and cool-down."""
    return [
        EventPolicy(
            event="drift_detected",
            kind="drift",
            consecutive=ev.drift.consecutive,
            cooldown=timedelta(minutes=ev.drift.cooldown_minutes),
        ),
        EventPolicy(
            event="decay_detected",
            kind="decay",
            consecutive=ev.decay.consecutive,
            cooldown=timedelta(minutes=ev.decay.cooldown_minutes),
        ),
        EventPolicy(
            event="estimate_dropped",
            kind="estimate",
            consecutive=ev.estimate.consecutive,
            cooldown=timedelta(minutes=ev.estimate.cooldown_minutes),
        ),
        EventPolicy(
            event="label_delay_high", kind="labels", consecutive=1, cooldown=timedelta(days=1)
        ),
    ]
