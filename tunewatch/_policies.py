"""Policies turn evaluation results into events, with hysteresis and cool-down.

A policy is stateless: it decides from the stored evaluations (newest first) and the
time of its last event (whose retune, if the job quota suppressed it, is still owed and
does not count), so a restarted daemon decides exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tunewatch.store import EvaluationRow

if TYPE_CHECKING:
    from tunewatch._config import EvaluationConfig


@dataclass(frozen=True, kw_only=True)
class EventPolicy:
    """Raise ``event`` when the last ``consecutive`` evaluations of ``kind`` alarmed.

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


def decide(
    policy: EventPolicy,
    evaluations: Sequence[EvaluationRow],
    *,
    last_event_at: datetime | None,
    now: datetime,
) -> Decision:
    """Whether ``policy`` fires now, and why (or why not)."""
    streak = 0
    for e in evaluations:  # newest first
        if e.kind != policy.kind or e.status == "insufficient_data":
            continue
        if not e.payload.get("alarm", False):
            break
        streak += 1
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
