"""What the governance routes document beyond their bodies: the codes of their 409s, as
their code paths raise them (:mod:`tunewatch._governance`, the store's stage changes,
approvals and rollbacks), and the promotion's 202 body."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from tunewatch.store import ApprovalRow

#: The governance routes' 409 codes, each with what it means.
CONFLICTS = {
    "champion_changed": "another serves than the champion named or read (an approval is closed)",
    "not_promotable": "rolled back: final",
    "no_previous_champion": "nothing to restore: none replaced, or rolled back or pulled since",
    "same_person": "a requester may not decide it",
    "approval_expired": "made `approvals.expire_after_days` ago or more: closed unpromoted",
    "already_decided": "decided or closed already",
    "stage_changed": "the version was retired or rolled back since the request",
    "champion_cannot_retire": "promote another version first",
    "rolled_back_is_final": "a rolled-back version stays so",
    "artefact_unavailable": "its artefact cannot be read back intact or loaded here",
    "signature_mismatch": "it would not read the champion's clients' requests",
    "task_mismatch": "the model is registered with another task",
    "regulated_mismatch": "the model is regulated: a registration cannot unregulate it",
    "champion_exists": "`stage: champion` while one serves: promote instead",
    "approval_required": "`stage: champion` where its promotion would wait for an approver",
    "version_exists": "the model holds this version live (shadow or champion) already: the "
    "same artefact, hyperparameters, dataset version, parent, study and reference (a "
    "retried registration); retire it, or change what differs, to register it again",
}
#: The codes of registering a version (``POST /v1/models/{model}/versions``).
REGISTERING = (
    "signature_mismatch",
    "task_mismatch",
    "regulated_mismatch",
    "champion_exists",
    "approval_required",
    "version_exists",
)
#: The codes of every route that makes a version champion.
TO_SERVE = ("champion_changed", "artefact_unavailable", "signature_mismatch")


def conflicts(*codes: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` entry documenting its 409 with ``codes``."""
    return {409: {"description": "; ".join(f"`{c}`: {CONFLICTS[c]}" for c in codes)}}


#: The 202 body of a promotion that waits for an approver.
PENDING: dict[str, Any] = {
    "type": "object",
    "required": ["status", "approval"],
    "properties": {
        "status": {"const": "pending_approval"},
        "approval": {"type": "object", "required": [f.name for f in fields(ApprovalRow)]},
    },
}


#: The codes of deciding an approval, either way.
DECIDING = ("same_person", "already_decided")
