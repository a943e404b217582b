"""Every event type the daemon records, in one list.

Events are written all over the daemon (the dispatcher, the comparison loop, the
launcher, the store's governance and stage changes), each naming its type where it
writes it. ``GET /v1/events?type=`` checks a filter against this list: a misspelt
``?type=drift_detcted`` matched nothing, and an empty list read as "nothing drifted".
A type an earlier version recorded and this one no longer does still filters while the
store holds events of it (:func:`tunewatch.api._log.list_events`), so the list names
only what is recorded now. ``tests/tunewatch/test_event_types_recorded.py`` reads every
site that records an event and fails on a type missing here.

The trigger events and the action outcomes are not repeated: they come from the
dispatcher's own lists (:data:`tunewatch._actions.EVENT_TYPES`, which the config's
``on:`` accepts, and :data:`tunewatch._actions.OUTCOMES`).
"""

from __future__ import annotations

from tunewatch._actions import EVENT_TYPES, OUTCOMES

#: What may trigger an action (a config's ``on:``): evaluation alarms, comparison
#: verdicts, sample ratio mismatches, Alertmanager alerts, the standing schedule and a
#: manual retune request.
TRIGGERS: tuple[str, ...] = EVENT_TYPES
#: What became of a trigger's action (``action_<outcome>``): taken, a duplicate, none
#: configured, refused, pending approval or suppressed (quota, cool-down, error).
ACTIONS: tuple[str, ...] = tuple(f"action_{outcome}" for outcome in OUTCOMES)
#: Re-tuning jobs: a standing schedule first seen, a challenger registered by a job, a
#: job that failed, was interrupted (its worker died; queued again) or was cancelled.
TUNING: tuple[str, ...] = (
    "schedule_started",
    "challenger_registered",
    "retune_failed",
    "retune_interrupted",
    "retune_cancelled",
)
#: Stages: a promotion carried out, any other stage change, and a comparison's winner
#: not promoted (a sample ratio mismatch blocked it, its guardrails refused it, or the
#: promotion failed).
PROMOTION: tuple[str, ...] = (
    "promoted",
    "stage_changed",
    "promotion_blocked",
    "promotion_refused",
    "promotion_failed",
)
#: Rollbacks: the rollback watch restoring the previous champion or failing to, and a
#: rollback an operator asked for.
ROLLBACK: tuple[str, ...] = ("rollback_triggered", "rollback_failed", "rolled_back")
#: Governance: a promotion's approval requested and decided, a live split held back
#: while its challenger needs an approver and served again, and labels refused as
#: conflicting with those stored.
GOVERNANCE: tuple[str, ...] = (
    "approval_requested",
    "approval_approved",
    "approval_rejected",
    "split_not_served",
    "split_served",
    "label_conflict",
)

#: Every event type the daemon records, family by family.
RECORDED: tuple[str, ...] = (*TRIGGERS, *ACTIONS, *TUNING, *PROMOTION, *ROLLBACK, *GOVERNANCE)
_RECORDED = frozenset(RECORDED)


def is_recorded(type: str) -> bool:
    """Whether this version of the daemon records events of ``type``."""
    return type in _RECORDED
