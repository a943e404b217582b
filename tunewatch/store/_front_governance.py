"""``GovernanceFront``: the store's promotion approvals and rollback.

The part of :class:`~._store.Store` for the changes of champion that governance rules:
each method opens one transaction and delegates to ``_governance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from . import _governance
from ._front_base import StoreFront
from ._governance import ApprovalRow
from ._types import Stage, VersionRow, utcnow


class GovernanceFront(StoreFront):
    """Approval requests and decisions, and rollback (``_governance``)."""

    def request_approval(
        self,
        model: str,
        version: int,
        *,
        requested_by: str,
        reason: str,
        rules: Sequence[str],
        expected_champion: int | None = None,
        expected_stage: Stage | None = None,
        expire_after_days: float | None = None,
        now: datetime | None = None,
    ) -> ApprovalRow:
        """A promotion that waits for an approver (idempotent per pending version; a new
        one when the pending one was made against another champion or made
        ``expire_after_days`` or more before ``now``). With ``expected_champion`` or
        ``expected_stage``, refused as :meth:`promote` refuses (``champion_changed``,
        ``stage_changed``); ``reason`` is cut to the column."""
        with self._tx("request_approval") as conn:
            return _governance.request_approval(
                conn,
                model,
                version,
                requested_by=requested_by,
                reason=reason,
                rules=rules,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
                expire_after_days=expire_after_days,
                now=now,
            )

    def decide_approval(
        self,
        approval_id: int,
        *,
        approver: str,
        approve: bool,
        reason: str,
        keep_previous: bool = False,
        expire_after_days: float | None = None,
        now: datetime | None = None,
    ) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
        """Approve (promoting in the same transaction) or reject; never by the requester.
        ``keep_previous``: an approval that promotes keeps the old champion in shadow
        (:meth:`promote`). Approving a request past its deadline at ``now`` (the earlier
        of the one stamped on it and ``expire_after_days`` after it was made; ``None``: the
        stamped one alone) closes it unpromoted, stored as rejected, as one made against
        another champion is."""
        with self._tx("decide_approval") as conn:
            return _governance.decide_approval(
                conn,
                approval_id,
                approver=approver,
                approve=approve,
                reason=reason,
                keep_previous=keep_previous,
                expire_after_days=expire_after_days,
                now=now,
            )

    def close_expired_approvals(
        self, *, expire_after_days: float | None, actor: str, now: datetime | None = None
    ) -> list[ApprovalRow]:
        """Close (stored as rejected, by ``actor``) every pending approval past its deadline
        at ``now`` (the clock's by default; the earlier of the one stamped on it and
        ``expire_after_days`` after it was made, if not None), each audited with its
        event, in one transaction; the closed ones, oldest first."""
        with self._tx("close_expired_approvals") as conn:
            return _governance.close_expired_approvals(
                conn, expire_after_days=expire_after_days, actor=actor, now=now or utcnow()
            )

    def get_approval(self, approval_id: int) -> ApprovalRow:
        with self._read("get_approval") as conn:
            return _governance.get_approval(conn, approval_id)

    def list_approvals(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = 100,
        version: int | None = None,
        before_id: int | None = None,
    ) -> list[ApprovalRow]:
        """Approval requests, newest first; ``version`` needs ``model`` to mean one; with
        ``before_id`` only those older than that request (a lower id), the cursor of the
        next older page."""
        with self._read("list_approvals") as conn:
            return _governance.list_approvals(
                conn,
                model=model,
                status=status,
                limit=limit,
                version=version,
                before_id=before_id,
            )

    def rollback(
        self, model: str, *, actor: str, reason: str, expected_champion: int | None = None
    ) -> tuple[VersionRow, VersionRow]:
        """Restore the champion the current one replaced; ``(restored, rolled_back)``.

        Raises ``ConflictError`` (code ``no_previous_champion``) when there is none, and
        (``champion_changed``) when ``expected_champion`` is given and no longer serves.
        """
        with self._tx("rollback") as conn:
            return _governance.rollback(
                conn, model, actor=actor, reason=reason, expected_champion=expected_champion
            )
