"""What the Alertmanager webhook (:mod:`tunewatch.api._alerts`) reads of an alert: its
episode is ``fingerprint`` + ``startsAt`` (its instant, in UTC: :func:`starts_at_of`), its
job's dedupe key is derived from both, only its string labels are kept, and an alert with
a NUL anywhere in them, a ``startsAt`` that is no RFC 3339 time, another status or no
registered model is ignored (:func:`read_alert`)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tunewatch.api._alert_ignores import Ignores, shown

logger = logging.getLogger(__name__)


def fingerprint_of(alert: dict[str, Any], labels: dict[str, str]) -> str:
    """The alert's ``fingerprint``, else a hash of its labels: of their JSON, which tells
    ``{"x": "1\\nz=2"}`` from ``{"x": "1", "z": "2"}`` (``k=v`` lines did not)."""
    value = alert.get("fingerprint")
    if isinstance(value, str) and value:
        return value[:64]
    text = json.dumps(sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: RFC 3339's date-time (section 5.6), as Go's time.RFC3339Nano writes Alertmanager's.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
#: The Gregorian calendar repeats every 400 years: a time in the years 0000 to 0399 is
#: read 400 years later (datetime starts at year 1), and written back 400 years earlier.
_CYCLE = 400


def starts_at_of(value: Any) -> str | None:
    """``startsAt``'s instant, when it is an RFC 3339 time of at most 64 characters,
    written as Go's time.RFC3339Nano writes it in UTC: ``Z``, the fraction's digits as
    sent less its trailing zeros (none when it is whole), so that Alertmanager's own
    (``2026-12-06T20:00:00.123456789Z``) is kept as sent; else None, as for a time whose
    UTC year is not one of 0000 to 9999 (Go writes no other). It keys the episode: keyed
    by the text, the same alert sent in another offset (``2026-12-07T01:30:00+05:30``:
    an HA peer in another time zone) or precision (``.000Z``) was a new episode, and
    queued another retune. Alertmanager always sends one: without it every episode of an
    alert shared one key, and after the first resolved the later ones were taken for
    stale deliveries of it."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    offset = timedelta()
    if off_h is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
    shift = _CYCLE if int(year) < _CYCLE else 0
    try:  # the fraction stays text: datetime holds microseconds, Alertmanager nanoseconds
        local = datetime(
            int(year) + shift, int(month), int(day), int(hour), int(minute), int(second)
        )
        utc = local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):  # no calendar's time, or past year 9999 in UTC
        return None
    if utc.year - shift < 0:
        return None
    digits = (fraction or "").rstrip("0")
    return f"{utc.year - shift:04d}-{utc:%m-%dT%H:%M:%S}{'.' if digits else ''}{digits}Z"


def dedupe_key(fingerprint: str, starts_at: str) -> str:
    """The job key of an episode: ``alert:{fingerprint}:{startsAt}``, which a fingerprint
    without a colon (Alertmanager's are hex) reads back unambiguously; one holding a colon
    gets ``alert#{len(fingerprint)}:{fingerprint}:{startsAt}``, which no key of the first
    form can equal (``#`` where it has ``:``). At most 138 characters."""
    if ":" not in fingerprint:
        return f"alert:{fingerprint}:{starts_at}"
    return f"alert#{len(fingerprint)}:{fingerprint}:{starts_at}"


def string_labels(labels: Any) -> dict[str, str]:
    """An alert's ``labels`` with only the labels whose value is a string, as
    Alertmanager's always are; the rest are dropped and logged. Not an object: none."""
    if not isinstance(labels, dict):
        return {}
    kept = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
    if len(kept) < len(labels):
        dropped = sorted(str(k) for k in labels if k not in kept)
        logger.warning(
            "alert %r: dropped %d label(s) whose value is not a string (Alertmanager's "
            "labels are strings): %s",
            kept.get("alertname", "unnamed")[:200],
            len(dropped),
            [k[:100] for k in dropped[:10]],
        )
    return kept


def nul_in(labels: dict[str, str], *, fingerprint: str, starts_at: str) -> str | None:
    """Where the alert holds a NUL (a label's name or value, the fingerprint, startsAt);
    None when nowhere."""
    for key, value in labels.items():
        if "\x00" in key:
            return f"a label name {key!r}"
        if "\x00" in value:
            return f"label {key!r}"
    if "\x00" in fingerprint:
        return "the fingerprint"
    if "\x00" in starts_at:
        return "startsAt"
    return None


_MISSING = object()  # an alert without startsAt


@dataclass(frozen=True, slots=True)
class AlertRead:
    """What the webhook reads of an alert it acts on: its episode's key (``fingerprint``,
    ``startsAt``), its model, its status and its string labels."""

    name: str
    fingerprint: str
    starts_at: str
    model: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]


def read_alert(
    alert: dict[str, Any],
    *,
    group_status: Any,
    label: str,
    known: Callable[[str], bool],
    ignores: Ignores,
) -> AlertRead | None:
    """``alert`` as the webhook acts on it, or None when it is ignored (added to
    ``ignores`` with why): a NUL in it, a ``startsAt`` that is not an RFC 3339 time, a
    status other than ``firing`` or ``resolved`` (the group's, ``group_status``, when the
    alert has none), no model in its label ``label``, or a model ``known`` says is not
    registered."""
    labels = string_labels(alert.get("labels"))
    # As long as the columns hold: Alertmanager's own values are far shorter.
    name = labels.get("alertname", "unnamed")[:200]
    raw_starts = alert.get("startsAt", _MISSING)
    fingerprint = fingerprint_of(alert, labels)
    nul = nul_in(
        labels,
        fingerprint=fingerprint,
        starts_at=raw_starts if isinstance(raw_starts, str) else "",
    )
    ignore = functools.partial(ignores.add, alertname=name, fingerprint=fingerprint)
    if nul is not None:
        ignore("nul", f"{name!r}: a NUL in {nul}", detail=f"a NUL in {nul}")
        return None
    starts_at = starts_at_of(raw_starts)
    if starts_at is None:
        got = "none" if raw_starts is _MISSING else shown(raw_starts)
        ignore(
            "starts_at",
            f"{name}: `startsAt` must be an RFC 3339 time of at most 64 characters, in UTC "
            f"of the years 0000 to 9999 (Alertmanager always sends one), got {got}",
            detail=f"`startsAt` is not an RFC 3339 time: {got}",
        )
        return None
    model = labels.get(label)
    status = alert.get("status", group_status)
    if status not in ("firing", "resolved"):
        ignore(
            "status",
            f"{name}: status {status!r}",
            detail=f"status must be 'firing' or 'resolved', got {shown(status)}",
        )
        return None
    if not isinstance(model, str):
        ignore(
            "model_label_missing",
            f"{name}: no known model in label {label!r}",
            detail=f"no label {shown(label)}",
        )
        return None
    if not known(model):
        ignore(
            "model_unknown",
            f"{name}: no known model in label {label!r}",
            detail=f"label {shown(label)} is {shown(model)}, not a registered model",
        )
        return None
    return AlertRead(name, fingerprint, starts_at, model, status, labels)
