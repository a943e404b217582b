"""Rows of the comparison tables (tests, looks, split checks) and labelled batches."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from .._errors import InvalidValueError
from ._canonical import canonical_json

TestKind = Literal["paired", "delong", "rollback_watch", "split"]
TestStatus = Literal["open", "decided", "closed"]
ANSWERING_ROLES = ("champion", "external")

#: How far before a test's watermark (the label arrival of the newest request it
#: consumed) its next read starts. A test's read walks only labels from there and leaves
#: out the requests it consumed; a request that becomes readable (its label committed, or
#: its paired shadow output written) more than this after newer ones were consumed is
#: never compared. An hour, as the comparison's clock margin: label arrival is stamped
#: by the accepting replica's clock, and replica clocks may run minutes apart (with 10
#: minutes, a replica 15 minutes behind lost every label it accepted).
LATE_COMMIT_MARGIN = timedelta(hours=1)

#: The key of a test's state that holds its watermarks, one per read ("labelled"; a live
#: split's "champion" and "challenger" arms).
WATERMARKS = "watermarks"

OrderKey = Literal["label", "request"]
"""What a read is ordered by: label arrival (``labels.received_at``) or request receipt
(``requests.received_at``, the order of reads that wait for labels to mature)."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """The order key of the last row a test consumed in one read."""

    order: OrderKey
    at: datetime


@dataclass(frozen=True, slots=True)
class ComparisonTestRow:
    """One test of ``challenger_version`` against ``champion_version`` (for a rollback
    watch: the new champion against the one it replaced) and its persisted state; a
    rollback watch's ``promotion_id`` is the ``promoted`` event it follows, a live split
    test's the id of the split test it replaced when the split's settings changed (0 for
    a pair's first split test and for paired tests)."""

    id: int
    model: str
    kind: TestKind
    champion_version: int
    challenger_version: int
    status: TestStatus
    decision: str
    correction: str | None
    n: int
    looks: int
    state: dict[str, Any]
    outcome: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    promotion_id: int = 0


@dataclass(frozen=True, slots=True)
class ComparisonLookRow:
    """One look of a test; ``estimate`` is challenger minus champion (a loss difference
    for paired tests and watches, an AUC difference for DeLong); ``None`` where unbounded."""

    id: int
    test_id: int
    model: str
    kind: str
    champion_version: int
    challenger_version: int
    method: str
    n: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float
    adjusted_p_value: float
    decision: str
    fixed_t_p: float | None
    bootstrap_ci: tuple[float, float] | None
    correction: str | None
    family_size: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LookValues:
    """What a new look stores (the row without ids and context)."""

    method: str
    n: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float
    adjusted_p_value: float
    decision: str
    fixed_t_p: float | None = None
    bootstrap_ci: tuple[float, float] | None = None
    correction: str | None = None
    family_size: int = 1


@dataclass(frozen=True, slots=True, eq=False)
class LabelledBatch:
    """Labelled rows of the log (a batch request gives several rows).

    ``answer`` is the answering version's output per row, ``paired`` the other version's
    output on the same rows (``None`` when not read paired). ``request_ids`` lists every
    request read, ``rows`` maps each row to its position in ``request_ids``; requests
    whose label or output shapes do not fit are read (so they can be marked consumed)
    but contribute no rows. ``units`` holds each request's unit key (``None`` without one).
    """

    request_ids: tuple[str, ...]
    units: tuple[str | None, ...]
    rows: np.ndarray  # int64 index into request_ids per row
    labels: np.ndarray  # float64 per row
    answer: np.ndarray  # float32 [rows, k]
    paired: np.ndarray | None  # float32 [rows, k2]
    looks: np.ndarray | None  # int64 per request: the look that consumed it (consumed reads)
    last: Watermark | None = None  # the order key of the last request read (oldest first)
    #: A matured read's by label arrival (``arrived_from``): the arrival of the last label
    #: it walked, read in this batch or in its newly matured part.
    arrived: Watermark | None = None

    @property
    def n_rows(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, slots=True)
class UnitTotal:
    """A live-split test's running totals for one unit of one arm: the ``n`` outcomes its
    consumed requests gave and the sum of their losses."""

    arm: Literal["champion", "challenger"]
    unit_key: str
    n: int
    total: float


@dataclass(frozen=True, slots=True)
class SplitCheckRow:
    id: int
    model: str
    champion_version: int
    challenger_version: int
    salt: str
    percent: float
    n_champion: int
    n_challenger: int
    chi2: float
    p_value: float
    mismatch: bool
    created_at: datetime


def read_start(
    state: Mapping[str, Any], read: str, order: OrderKey, *, late_labels: bool = False
) -> datetime | None:
    """Where a test's next ``read`` in ``order`` starts: its watermark less
    :data:`LATE_COMMIT_MARGIN`. ``None`` (from the test's start) without one, with one on
    another order key (the label maturity setting changed), and for reads by request
    receipt (``label_maturity_s``) unless ``late_labels``: a matured request's label may
    arrive at any time after newer requests were consumed (a repayment posted after
    maturity, the defaults first), and read from a receipt watermark alone it was never
    compared, a skewed sample. A read that also takes the labels arrived since its own
    label-arrival watermark (``read_labelled``'s ``arrived_from``) says ``late_labels``."""
    mark = _watermark(state, read)
    if (order == "request" and not late_labels) or mark is None or mark.order != order:
        return None
    return mark.at - LATE_COMMIT_MARGIN


def advanced(
    state: Mapping[str, Any],
    previous: Mapping[str, Any],
    marks: Mapping[str, Watermark | None],
) -> dict[str, Any]:
    """``state`` with the watermarks of ``previous`` (the state it replaces) and of its own,
    each read's moved on to ``marks`` (a batch's :attr:`LabelledBatch.last`; ``None``: an
    empty read). A watermark never goes back on its order key: a late row read within
    the margin is older than the newest row consumed before it."""
    kept: dict[str, Any] = {**_marks(previous), **_marks(state)}
    for read, mark in marks.items():
        if mark is None:
            continue
        old = _watermark({WATERMARKS: kept}, read)
        if old is None or old.order != mark.order or old.at < mark.at:
            kept[read] = {"order": mark.order, "at": mark.at.isoformat()}
    if not kept:
        return dict(state)
    return {**state, WATERMARKS: kept}


def _marks(state: Mapping[str, Any]) -> dict[str, Any]:
    marks = state.get(WATERMARKS)
    return dict(marks) if isinstance(marks, Mapping) else {}


def _watermark(state: Mapping[str, Any], read: str) -> Watermark | None:
    item = _marks(state).get(read)
    if not isinstance(item, Mapping) or item.get("order") not in ("label", "request"):
        return None
    try:
        at = datetime.fromisoformat(str(item["at"]))
    except (KeyError, ValueError):
        return None  # unreadable: read from the test's start, once
    if at.tzinfo is None:
        return None
    return Watermark(item["order"], at)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as it is stored (JSON). A value that is not a finite number is an
    ``InvalidValueError`` naming its key path: a look whose statistics overflowed cannot
    be stored (the runner logs that the test cannot look)."""
    try:
        text = canonical_json(dict(obj))
    except ValueError as exc:
        where = _non_finite(dict(obj), "state")
        if where is None:
            raise InvalidValueError(f"comparison state cannot be stored: {exc}") from exc
        raise InvalidValueError(
            f"comparison {where[0]} must be a finite number, got {where[1]!r}"
        ) from exc
    result: dict[str, Any] = json.loads(text)
    return result


def _non_finite(obj: Any, path: str) -> tuple[str, float] | None:
    """The key path and value of the first float in ``obj`` (in stored key order) that is
    not a finite number."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path, obj)
    if isinstance(obj, Mapping):
        items: list[tuple[Any, Any]] = sorted(obj.items(), key=lambda kv: str(kv[0]))
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    else:
        return None
    for key, value in items:
        found = _non_finite(value, f"{path}.{key}")
        if found is not None:
            return found
    return None
