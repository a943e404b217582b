"""A label refused as a ``conflict`` (its request id holds another label: the first
wins) leaves a trace: a warning, an audit entry and an event, once per refusal, not per
retry."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from tunewatch.store import LabelItem, LabelRow, LabelStatus, Store, canonical_json

logger = logging.getLogger(__name__)

LABEL_CONFLICT = "label_conflict"  # the audit action and the event type of a refusal
_AUDITED_IDS = 20  # refused labels shown in an audit entry (and its event), by id
_LOGGED_IDS = 5  # request ids named in the warning
_SHOWN_VALUES = 32  # numbers shown of a label (one per row of its request)
_RECENT_ENTRIES = 20  # the actor's latest refusals about the model a retry is matched with


def refused_labels(labels: Sequence[LabelItem], statuses: Sequence[LabelStatus]) -> list[LabelItem]:
    """The labels answered ``conflict``, each (id, value, outcome) once, by id."""
    refused: dict[str, LabelItem] = {}
    for item, status in zip(labels, statuses, strict=True):
        if status == "conflict":
            outcome = None if item.outcome is None else float(item.outcome)
            key = canonical_json([item.request_id, item.value, outcome])
            refused.setdefault(key, LabelItem(item.request_id, item.value, outcome))
    return [refused[k] for k in sorted(refused, key=lambda k: (refused[k].request_id, k))]


def audit_conflicts(store: Store, model: str, actor: str, refused: Sequence[LabelItem]) -> None:
    """Log, audit (``label_conflict`` by ``actor``, about ``model``) and record as an event
    the labels of one request refused because their id already holds another label.

    The entry shows the first ``_AUDITED_IDS`` refused labels (by id), each with the
    stored and the refused value and outcome, the count of them all and a digest of them
    all. A request repeating the refusals of one of the actor's latest entries about the
    model (a client's retry) is logged, naming that entry, but not audited again: retries
    add no rows, even concurrent ones (on two replicas at once): the lookup is repeated in
    the transaction that appends, serialised by the audit chain's head (see
    :meth:`Store.audit_once`). Labels never change once stored, so nothing else was
    refused."""
    digest = hashlib.sha256(
        canonical_json([[r.request_id, r.value, r.outcome] for r in refused]).encode()
    ).hexdigest()
    first = ", ".join(repr(r.request_id) for r in refused[:_LOGGED_IDS])
    recent = store.audit_log(_RECENT_ENTRIES, target=model, action=LABEL_CONFLICT, actor=actor)
    audited = next((e for e in recent if e.details.get("digest") == digest), None)
    appended = False
    if audited is None:  # looked up again, with the append, where retries are serialised
        conflicts = []
        for r in refused[:_AUDITED_IDS]:
            stored = store.get_label(model, r.request_id)
            conflicts.append(
                {
                    "request_id": r.request_id,
                    "stored": _shown(stored),
                    "refused": {"label": _shown_value(r.value), "outcome": r.outcome},
                }
            )
        details = {"count": len(refused), "conflicts": conflicts, "digest": digest}
        audited, appended = store.audit_once(
            actor=actor,
            action=LABEL_CONFLICT,
            target=model,
            details=details,
            recent=_RECENT_ENTRIES,
        )
    how = "audited as entry" if appended else "a retry of audit entry"
    logger.warning(
        "model %s: refused %d label(s) from %s as conflicts: their request ids hold another "
        "label, which was kept (first: %s); %s %d",
        model,
        len(refused),
        actor,
        first,
        how,
        audited.id,
    )


def _shown(stored: LabelRow | None) -> dict[str, Any]:
    if stored is None:  # not expected: a conflict is with a stored label, never removed
        return {"label": None, "outcome": None}
    return {"label": _shown_value(stored.value), "outcome": stored.outcome}


def _shown_value(value: float | list[float]) -> Any:
    """A label for an audit entry: whole, or a long one's first numbers and length."""
    if isinstance(value, list) and len(value) > _SHOWN_VALUES:
        return {"first": value[:_SHOWN_VALUES], "length": len(value)}
    return value
