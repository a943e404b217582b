"""The audit of a person's refused governance action.

A person's refused attempt is audited though nothing was done (:func:`audit_denied`): a
promotion, approval, rejection or rollback the CLI or the API asks for with
``audit_refusal`` and that is refused (``ConflictError``, 409: ``same_person``,
``already_decided``, ``champion_changed`` …), and, from the API, one whose caller's role
may not do it (403), leave a ``denied_<action>`` entry naming the caller, the target, the
code and the message, written in a transaction of its own once the refused one rolled
back. Only the ``ConflictError`` of the store's rules: a version or approval that does not
exist (404) names nothing, and the daemon's own loops (the comparison loop's promotions,
the rollback watch) record their refusals as events.

Their log lines come from the logger ``tunewatch._governance``, as the stage changes'
lines do: one logger for every governance line an operator greps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from tunewatch._errors import ConflictError, TunewatchError
from tunewatch.store import Store

logger = logging.getLogger("tunewatch._governance")


#: The governance actions whose refusal is audited, as ``denied_<action>``.
GovernedAction = Literal["promote", "approve", "reject", "rollback"]


def audit_denied(
    store: Store,
    action: GovernedAction,
    *,
    actor: str,
    target: str,
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Log and audit ``actor``'s refused ``action`` on ``target`` (``model/v<n>``, or the
    model for a rollback) as ``denied_<action>``, its details ``details`` with the
    answer's ``status``, ``code`` and ``message``, in a transaction of its own: the
    refused one rolled back, and this entry is all the attempt leaves. An entry that
    cannot be written is logged, never raised: the caller is answered the refusal, not the
    audit's failure."""
    logger.log(
        logging.INFO if status == 409 else logging.WARNING,
        "denied %s of %s by %r (%d %s): %s",
        action,
        target,
        actor,
        status,
        code,
        message,
    )
    try:
        store.append_audit(
            actor=actor,
            action=f"denied_{action}",
            target=target,
            details={**(details or {}), "status": status, "code": code, "message": message},
        )
    except TunewatchError as exc:  # the store's failures, translated
        logger.error(
            "could not audit the refusal denied_%s of %s by %r (%d %s): %s",
            action,
            target,
            actor,
            status,
            code,
            exc,
            exc_info=exc,
        )


def approval_target(store: Store, approval_id: int) -> str:
    """The audit target of approval ``approval_id``'s decisions, its ``model/v<n>``;
    ``approval/<id>`` when it cannot be read (there is none, the store failed)."""
    try:
        approval = store.get_approval(approval_id)
    except TunewatchError:
        return f"approval/{approval_id}"
    return f"{approval.model}/v{approval.version}"


@contextmanager
def refusal_audited(
    store: Store,
    action: GovernedAction,
    *,
    actor: str,
    target: Callable[[], str],
    details: Mapping[str, Any],
    audited: bool,
) -> Iterator[None]:
    """Audit (:func:`audit_denied`, when ``audited``) the ``ConflictError`` the block
    raises, and raise it."""
    try:
        yield
    except ConflictError as exc:
        if audited:
            audit_denied(
                store,
                action,
                actor=actor,
                target=target(),
                status=409,
                code=exc.code,
                message=exc.message,
                details=details,
            )
        raise
