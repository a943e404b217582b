"""Each configured model's promotion safe ranges, kept in the store
(``promotion_safe_ranges``), in the caller's transaction.

The rule that makes a promotion of hyperparameters outside their safe ranges wait for an
approver (:mod:`tunewatch._approval_rules`) read the ranges only from the promoting
process's own config: ``tunewatch promote`` with only the store's URL, or a replica still on
an older config, promoted at once what the daemon held for an approver. A daemon stores
the ranges its config sets when it starts (:func:`set_safe_ranges`), and every promotion
checks them as well as its own config's: a stale or missing config only adds approvals.

They are kept by model name, whether or not the model is registered yet, as canonical
JSON with a format version (:data:`FORMAT_VERSION`): a change is written with its audit
entry (``set_safe_ranges``, the old and new values) in the same transaction, and ranges
stored as before are not written again. What this build cannot read (a newer format, a
damaged row) is read as :attr:`~._types.StoredSafeRanges.unreadable`, which makes every
promotion wait, never as "no ranges".

The document also says whether the daemon's config regulates the model
(:attr:`~._types.StoredSafeRanges.regulated`): a model not registered yet has no row to
flag, and a registration under a config that does not list it registered its first
champion with no approver. Regulation only tightens: ranges stored without it keep it.
The key (``"regulated": true``) is written only when it is true, so a document that does
not regulate the model is the same text as before it and no daemon stores it again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from .._errors import InvalidValueError
from ._audit import append_audit_in
from ._canonical import canonical_json
from ._engine import dialect_insert
from ._registry_text import MAX_NAME, _possible_name
from ._schema import promotion_safe_ranges
from ._types import SafeBound, StoredSafeRanges, utcnow

#: The format of a stored document; a newer one is read as unreadable.
FORMAT_VERSION = 1

#: The audit action of a change of a model's stored ranges.
ACTION = "set_safe_ranges"


def set_safe_ranges(
    conn: Connection, model: str, ranges: StoredSafeRanges, *, actor: str, reason: str
) -> bool:
    """Store ``ranges`` as ``model``'s and audit the change (``set_safe_ranges``, with the
    old value, ``None`` for the first, and the new); ``False``, and nothing written, when
    they are stored already. The row is inserted or locked before it is compared, so two
    daemons starting together each audit the value the other left. A stored regulation is
    kept whatever ``ranges`` say (:func:`_regulated_text`)."""
    if not _possible_name(model):
        raise InvalidValueError(
            f"model `name` must be 1 to {MAX_NAME} printable characters, got {model[:80]!r}"
        )
    if ranges.unreadable is not None:
        raise ValueError("ranges this build could not read are not stored again")
    text = encode(ranges)
    t = promotion_safe_ranges
    now = utcnow()
    inserted = conn.execute(  # RETURNING: PostgreSQL's rowcount of an INSERT is -1 here
        dialect_insert(conn, t)
        .values(model=model, ranges=text, updated_at=now)
        .on_conflict_do_nothing(index_elements=[t.c.model])
        .returning(t.c.model)
    ).first()
    old: Any = None
    if inserted is None:
        stored = conn.execute(
            select(t.c.ranges).where(t.c.model == model).with_for_update()
        ).scalar_one()
        if not ranges.regulated and _regulated_text(stored):
            # a config that does not regulate the model (an older one, another daemon's)
            # never clears it: regulation only tightens
            ranges = dataclasses.replace(ranges, regulated=True)
            text = encode(ranges)
        if stored == text:
            return False
        conn.execute(update(t).where(t.c.model == model).values(ranges=text, updated_at=now))
        old = _as_audited(stored)
    append_audit_in(
        conn,
        actor=actor,
        action=ACTION,
        target=model,
        details={"old": old, "new": json.loads(text), "reason": reason},
    )
    return True


def get_safe_ranges(conn: Connection, model: str) -> StoredSafeRanges | None:
    """``model``'s stored ranges; ``None`` when none are stored."""
    if not _possible_name(model):
        return None
    t = promotion_safe_ranges
    text = conn.execute(select(t.c.ranges).where(t.c.model == model)).scalar_one_or_none()
    return None if text is None else decode(text)


def encode(ranges: StoredSafeRanges) -> str:
    """The canonical JSON ``ranges`` are stored as (the same text for the same ranges);
    ``regulated`` only when true."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "safe_ranges": {n: _bound_json(b) for n, b in ranges.safe_ranges.items()},
        "search_space": {n: _bound_json(b) for n, b in ranges.search_space.items()},
        "search_space_unreadable": ranges.search_space_unreadable,
    }
    if ranges.regulated:
        doc["regulated"] = True
    return canonical_json(doc)


def decode(text: str) -> StoredSafeRanges:
    """The ranges stored as ``text``; :attr:`~StoredSafeRanges.unreadable` says why when
    this build cannot read them."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return StoredSafeRanges(unreadable=f"stored safe ranges are not JSON: {exc}")
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if version != FORMAT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > 0:
            why = (
                f"stored safe ranges are in format {version}, which this tunewatch does not "
                f"read (it reads {FORMAT_VERSION}): a newer tunewatch stored them"
            )
        else:
            why = f"stored safe ranges have no readable `format_version`, got {version!r:.80}"
        return StoredSafeRanges(unreadable=why)
    try:
        unreadable_space = doc["search_space_unreadable"]
        if unreadable_space is not None and not isinstance(unreadable_space, str):
            raise TypeError("`search_space_unreadable` is not text")
        regulated = doc.get("regulated", False)  # absent: stored unregulated
        if not isinstance(regulated, bool):
            raise TypeError(f"`regulated` must be true or false, got {regulated!r:.80}")
        return StoredSafeRanges(
            safe_ranges=_bounds(doc["safe_ranges"]),
            search_space=_bounds(doc["search_space"]),
            search_space_unreadable=unreadable_space,
            regulated=regulated,
        )
    except (KeyError, TypeError, ValueError) as exc:
        return StoredSafeRanges(unreadable=f"stored safe ranges are damaged: {exc!r:.200}")


def _bound_json(bound: SafeBound) -> dict[str, Any]:
    choices = None if bound.choices is None else list(bound.choices)
    return {"low": bound.low, "high": bound.high, "choices": choices}


def _bounds(doc: Any) -> dict[str, SafeBound]:
    if not isinstance(doc, Mapping):
        raise TypeError(f"safe ranges must be a mapping, got {type(doc).__name__}")
    return {str(name): _bound(name, rule) for name, rule in doc.items()}


def _bound(name: str, rule: Any) -> SafeBound:
    if not isinstance(rule, Mapping):
        raise TypeError(f"safe range {name!r:.80} is not a mapping")
    low, high, choices = rule["low"], rule["high"], rule["choices"]
    for value in (low, high):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
        ):
            raise ValueError(f"safe range {name!r:.80} has a bound that is not a number")
    if choices is not None:
        if not isinstance(choices, list) or not all(
            isinstance(c, str | int | float | bool) for c in choices
        ):
            raise ValueError(f"safe range {name!r:.80} has choices that are not a list of values")
        return SafeBound(low=low, high=high, choices=tuple(choices))
    return SafeBound(low=low, high=high)


def _regulated_text(text: str) -> bool:
    """Whether the stored ``text`` regulates the model: read from the JSON whatever its
    format, so that one this build cannot read otherwise (a newer format's) is not stored
    over unregulated."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("regulated") is True


def _as_audited(text: str) -> Any:
    """The stored value as the audit records it: the document, or the text when it is not
    JSON (a damaged row)."""
    try:
        return json.loads(text)
    except ValueError:
        return text
