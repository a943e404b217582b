"""The leader's hourly closing of expired approval requests (``approvals.expire_after_days``):
a daemon-wide task of the scheduler's (:class:`tunewatch._scheduler.Task`), as the
retention purge is (:mod:`tunewatch._retention_task`).

A pending request expires ``expire_after_days`` after it was made: its evidence is that
old. Approving one then closes it unpromoted (the store's ``decide_approval``); this task
closes the ones no one decided, so the approvals listing and the dashboard stop offering
them. Each is stored as rejected (the table holds no other closed status) by
:data:`ACTOR`, the daemon's own name in the audit log (its promotions and rollbacks), its
reason saying how old it was and the limit, audited with its ``approval_rejected`` event,
as a request closed any other way is. Requesting the promotion again opens a new one.

The sweep runs whatever this process's own limit: a request keeps the deadline of the
limit it was made under (``approvals.expires_at``), and a leader whose config sets none
(``null``) closes those past it. It ran no sweep, and such a request stayed pending,
offered for approval in the listing and the dashboard, past its ``expires_at``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tunewatch.comparison._results import ACTOR
from tunewatch.store import ApprovalRow, Store

if TYPE_CHECKING:  # the scheduler imports this module: its Task is read at the call
    from tunewatch._scheduler import Task

__all__ = ["ACTOR", "EXPIRY_INTERVAL_S", "EXPIRY_TASK", "expire_approvals", "expiry_task"]

logger = logging.getLogger(__name__)

#: The task's name and its interval: a request closes within an hour of its expiry (and
#: approving it in that hour closes it too).
EXPIRY_TASK = "expire_approvals"
EXPIRY_INTERVAL_S = 3_600.0
#: The task's last run as a new leader reads it: long past, so it sweeps soon after taking
#: over (one read of the pending requests), whatever an earlier leader did.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def expiry_task(
    store: Store,
    expire_after_days: float | None,
    *,
    now: Callable[[], datetime] | None = None,
) -> Task:
    """The hourly sweep of :func:`expire_approvals` (``expire_after_days`` null: this
    process sets no limit of its own, and closes only the requests past the deadline
    stamped on them)."""
    from tunewatch._scheduler import Task

    def run() -> None:
        expire_approvals(store, expire_after_days=expire_after_days, now=now)

    return Task(EXPIRY_TASK, EXPIRY_INTERVAL_S, run, lambda: _NEVER)


def expire_approvals(
    store: Store,
    *,
    expire_after_days: float | None,
    now: Callable[[], datetime] | None = None,
) -> list[ApprovalRow]:
    """Close every pending request past its deadline at ``now`` (the store's clock, which
    stamped the requests, by default; the earlier of the one stamped on it and
    ``expire_after_days`` after it was made, if not None), in one transaction; the closed
    ones, oldest first, each logged."""
    closed = store.close_expired_approvals(
        expire_after_days=expire_after_days, actor=ACTOR, now=None if now is None else now()
    )
    for approval in closed:
        logger.info(
            "approval=%d model=%s version=%d closed unpromoted by %r: %r",
            approval.id,
            approval.model,
            approval.version,
            ACTOR,
            approval.decision_reason,
        )
    return closed
