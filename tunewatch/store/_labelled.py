"""Reading labelled traffic for comparisons: requests answered by one version, with another
version's output on the same requests, each consumed once per test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    ScalarSelect,
    Select,
    and_,
    literal_column,
    select,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from ._comparison_rows import (
    ANSWERING_ROLES,
    LabelledBatch,
    OrderKey,
    Watermark,
)
from ._schema import (
    comparison_consumed,
    labels,
    models,
    outputs,
    requests,
)
from ._windows import byte_ordered, label_rows, modal_width

# -- reading labelled traffic ---------------------------------------------------------------

ValidRows = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Which rows of (labels, one version's outputs) an objective can score: a boolean mask."""


def read_labelled(
    conn: Connection,
    *,
    model: str,
    answered_by: int,
    paired_with: int | None = None,
    unconsumed_by: int | None = None,
    consumed_by: int | None = None,
    received_from: datetime | None = None,
    received_before: datetime | None = None,
    newest_first: bool = False,
    limit: int | None = None,
    roles: tuple[str, ...] = ANSWERING_ROLES,
    alone: bool = False,
    keyed: bool = False,
    matured_before: datetime | None = None,
    order_from: datetime | None = None,
    arrived_from: datetime | None = None,
    valid_rows: ValidRows | None = None,
) -> LabelledBatch:
    """Labelled requests that ``answered_by`` answered (with one of ``roles``; by default
    champion or external), with
    ``paired_with``'s output on the same requests when given (requests without it are
    left out). ``unconsumed_by`` leaves out requests a test already consumed;
    ``consumed_by`` reads only those, with the look that consumed each. ``keyed`` reads
    only requests that carry a unit key (a live split's units).

    A request whose rows the task cannot have, or ``valid_rows`` (an objective's
    :meth:`~monitor.objectives.Objective.valid_rows`: a loss that is undefined, not
    finite or too large) refuses for either output, is read (so a test consumes it) but
    not used. ``valid_rows`` sees the batch's fitting rows at once.

    Ordered by label arrival (then request id), so a test's reads are reproducible. With
    ``matured_before``, only requests received before it are read, in the order they were
    received (``newest_first``: newest request first): when a label's delay depends on
    the outcome, the labels that arrive first (or last) are a skewed sample, and requests
    old enough for every label to be in are not.

    ``order_from`` reads only rows whose order key (label arrival; with
    ``matured_before``, request receipt) is at or after it: a test's read from its
    watermark (see :func:`~._comparison_rows.read_start`), which walks the labels (or
    requests) from there by their time index, not every request since ``received_from``.
    An ascending read's batch carries its last row's order key (``last``).

    ``arrived_from`` (with ``matured_before``, ascending) adds, after the newly matured
    requests that ``order_from`` bounds, those received before ``matured_before`` whose
    label arrived at or after it, by label arrival: a matured request's label may arrive
    after the receipt watermark passed it (a repayment posted after maturity), and is
    read from the test's label-arrival watermark, not by walking every matured request
    since ``received_from``. Up to ``limit`` in all; ``arrived`` carries the second part's
    watermark (see :func:`_with_late_labels`).
    """
    answer = outputs.alias("answer")
    joined = requests.join(
        labels,
        and_(labels.c.model == requests.c.model, labels.c.request_id == requests.c.request_id),
    ).join(
        answer,
        and_(
            answer.c.model == requests.c.model,
            answer.c.request_id == requests.c.request_id,
            answer.c.version == answered_by,
            answer.c.role.in_(roles),
        ),
    )
    columns: list[Any] = [
        requests.c.request_id,
        requests.c.unit_key,
        requests.c.n_rows,
        labels.c.value,
        labels.c.received_at,
        requests.c.received_at.label("request_at"),
        answer.c.n_rows.label("a_rows"),
        answer.c.n_cols.label("a_cols"),
        answer.c["values"].label("a_values"),
    ]
    if paired_with is not None:
        other = outputs.alias("other")
        joined = joined.join(
            other,
            and_(
                other.c.model == requests.c.model,
                other.c.request_id == requests.c.request_id,
                other.c.version == paired_with,
            ),
        )
        columns += [
            other.c.n_rows.label("b_rows"),
            other.c.n_cols.label("b_cols"),
            other.c["values"].label("b_values"),
        ]
    if consumed_by is not None:
        joined = joined.join(
            comparison_consumed,
            and_(
                comparison_consumed.c.test_id == consumed_by,
                comparison_consumed.c.request_id == requests.c.request_id,
            ),
        )
        columns.append(comparison_consumed.c.look)
    stmt = select(*columns).select_from(joined).where(requests.c.model == model)
    if alone:  # a live split's challenger arm: no champion or mirrored answer on the request
        answered = outputs.alias("answered")
        stmt = stmt.where(
            ~select(answered.c.request_id)
            .where(
                answered.c.model == requests.c.model,
                answered.c.request_id == requests.c.request_id,
                answered.c.role.in_(ANSWERING_ROLES),
            )
            .exists()
        )
    if consumed_by is not None:
        # the same rows as the join, as a list to walk: without it SQLite walks the
        # model's outputs (or requests) and probes the test's consumed rows for each
        stmt = stmt.where(
            requests.c.request_id.in_(
                select(comparison_consumed.c.request_id).where(
                    comparison_consumed.c.test_id == consumed_by
                )
            )
        )
    if keyed:
        stmt = stmt.where(requests.c.unit_key.is_not(None))
    if unconsumed_by is not None:
        stmt = stmt.where(_consumed(unconsumed_by).is_(None))
    task = conn.execute(select(models.c.task).where(models.c.name == model)).scalar()
    paired = paired_with is not None
    order: OrderKey = "label" if matured_before is None else "request"
    bounds = _Bounds(model, received_from, received_before, matured_before, newest_first, limit)
    rows = list(conn.execute(_bounded(conn, stmt, order, order_from, bounds)))
    if arrived_from is not None and matured_before is not None and not newest_first:
        return _with_late_labels(conn, stmt, rows, arrived_from, bounds, paired, task, valid_rows)
    batch = _assemble(rows, paired=paired, task=task, valid_rows=valid_rows)
    if not rows or newest_first:
        return batch
    last = rows[-1].received_at if order == "label" else rows[-1].request_at
    return replace(batch, last=Watermark(order, last))


@dataclass(frozen=True, slots=True)
class _Bounds:
    """The bounds of a read that each of its parts keeps (see :func:`read_labelled`)."""

    model: str
    received_from: datetime | None
    received_before: datetime | None
    matured_before: datetime | None
    newest_first: bool
    limit: int | None


def _bounded(
    conn: Connection,
    stmt: Select[Any],
    order: OrderKey,
    order_from: datetime | None,
    bounds: _Bounds,
) -> Select[Any]:
    """``stmt`` read in ``order`` from ``order_from`` (``None``: no bound) within ``bounds``."""
    received: ColumnElement[datetime] = requests.c.received_at
    if order_from is not None and order == "label":
        stmt = stmt.where(labels.c.model == bounds.model, labels.c.received_at >= order_from)
        if conn.dialect.name == "sqlite":
            # a unary + keeps SQLite off the requests' time index, which walks every
            # request since ``received_from``: the labels' index seeks the watermark
            received = UnaryExpression(
                requests.c.received_at, operator=operators.custom_op("+"), type_=received.type
            )
    elif order_from is not None:
        stmt = stmt.where(requests.c.received_at >= order_from)
    if bounds.received_from is not None:
        stmt = stmt.where(received >= bounds.received_from)
    if bounds.received_before is not None:
        stmt = stmt.where(received < bounds.received_before)
    if bounds.matured_before is not None:
        stmt = stmt.where(received < bounds.matured_before)
    # request id breaks ties in byte order on every backend, so a limited read takes the
    # same requests on each
    tie = byte_ordered(requests.c.request_id, conn.dialect.name)
    key = requests.c.received_at if order == "request" else labels.c.received_at
    if bounds.newest_first:
        stmt = stmt.order_by(key.desc(), tie.desc())
    else:
        stmt = stmt.order_by(key, tie)
    return stmt if bounds.limit is None else stmt.limit(bounds.limit)


def _with_late_labels(
    conn: Connection,
    stmt: Select[Any],
    matured: list[Row[Any]],
    arrived_from: datetime,
    bounds: _Bounds,
    paired: bool,
    task: str | None,
    valid_rows: ValidRows | None,
) -> LabelledBatch:
    """The newly ``matured`` requests (read by receipt) and, up to the read's limit, the
    matured requests whose label arrived from ``arrived_from`` on, by label arrival. Each
    part's watermark is the order key of the last row it walked: ``last`` the receipt
    of the last newly matured request, ``arrived`` the label arrival of the last request
    of the second part, read in either part (the two overlap: a request newly matured
    with a label arrived since). A part cut short by the limit leaves its watermark at
    the last row it took. A full first part leaves the second for the next read."""
    rows = list(matured)
    arrived: Watermark | None = None
    if bounds.limit is None or len(rows) < bounds.limit:
        read = {r.request_id for r in rows}
        for r in conn.execute(_bounded(conn, stmt, "label", arrived_from, bounds)):
            if r.request_id not in read:
                if bounds.limit is not None and len(rows) >= bounds.limit:
                    break
                rows.append(r)
            arrived = Watermark("label", r.received_at)
    batch = _assemble(rows, paired=paired, task=task, valid_rows=valid_rows)
    last = Watermark("request", matured[-1].request_at) if matured else None
    return replace(batch, last=last, arrived=arrived)


def _consumed(test_id: int) -> ScalarSelect[Any]:
    """1 when ``test_id`` consumed the statement's request, else NULL: a lookup of the
    consumed rows' key (test, request) per request, on every backend.

    Not ``NOT EXISTS``: PostgreSQL turns that into an anti-join planned from the
    statistics, which estimate a test created since the last ANALYZE (autovacuum rarely
    analyses a table that only grows) to have consumed one request. It then compared
    each request with each of the test's consumed rows (a nested loop over them,
    materialised): 148 s a look over 1.7M requests, where a lookup per request took 7 s.
    A sublink with LIMIT is never pulled up into a join, so this runs as a subplan that
    probes an index by the request (the primary key, or the requests' own index).
    """
    return (
        select(literal_column("1"))
        .where(
            comparison_consumed.c.test_id == test_id,
            comparison_consumed.c.request_id == requests.c.request_id,
        )
        .limit(1)
        .scalar_subquery()
    )


def _fits(task: str | None, y: list[float], *outputs: np.ndarray) -> bool:
    """Whether a request's rows can be scored: labels the task can have (0/1 for binary,
    a class index for multiclass), finite outputs. A row that cannot would make every
    look raise, and with it the test stop for good."""
    if not all(np.isfinite(o).all() for o in outputs):
        return False
    labels = np.asarray(y, dtype=np.float64)
    if task == "binary":
        return bool(np.isin(labels, (0.0, 1.0)).all())
    if task == "multiclass":  # and both versions answer the same classes
        k = outputs[0].shape[1]
        if any(o.shape[1] != k for o in outputs):
            return False
        return bool(((labels >= 0) & (labels < k) & (labels == np.floor(labels))).all())
    return bool(np.isfinite(labels).all())


def _assemble(
    rows: list[Row[Any]], *, paired: bool, task: str | None, valid_rows: ValidRows | None
) -> LabelledBatch:
    ids: list[str] = []
    units: list[str | None] = []
    index: list[int] = []
    ys: list[float] = []
    answers: list[np.ndarray] = []
    others: list[np.ndarray] = []
    looks: list[int] = []
    k = modal_width([r.a_cols for r in rows])
    k2 = modal_width([r.b_cols for r in rows]) if paired else 1
    for r in rows:
        position = len(ids)
        ids.append(r.request_id)
        units.append(r.unit_key)
        if "look" in r._fields:
            looks.append(int(r.look))
        n = int(r.n_rows)
        y = label_rows(r.value, n)
        if y is None or r.a_rows != n or r.a_cols != k:
            continue  # malformed for this comparison: read (to be consumed), not used
        if paired and (r.b_rows != n or r.b_cols != k2):
            continue
        a = np.frombuffer(r.a_values, dtype=np.float32).reshape(n, k)
        b = np.frombuffer(r.b_values, dtype=np.float32).reshape(n, k2) if paired else None
        if not _fits(task, y, a, *([b] if b is not None else [])):
            continue  # read (to be consumed), not scored
        index.extend([position] * n)
        ys.extend(y)
        answers.append(a)
        if b is not None:
            others.append(b)
    rows_of = np.asarray(index, dtype=np.int64)
    labels_of = np.asarray(ys, dtype=np.float64)
    answer = np.concatenate(answers) if answers else np.empty((0, k), np.float32)
    other = np.concatenate(others) if others else np.empty((0, k2), np.float32)
    if valid_rows is not None and rows_of.size:
        # a request with a row the objective cannot score (its loss undefined, infinite or
        # too large for the tests' sums) is read, to be consumed, but not used; paired,
        # only when neither version's loss can be scored there (its label): one version's
        # loss past the bound counts against it, at the bound (shadow.stats
        # .paired_differences) — left out, a challenger answering 1e26 on 15 % of requests
        # had its worst answers never counted, and was decided better
        valid = valid_rows(labels_of, answer)
        if paired:
            valid = valid | valid_rows(labels_of, other)
        keep = ~np.isin(rows_of, rows_of[~valid])
        rows_of, labels_of, answer = rows_of[keep], labels_of[keep], answer[keep]
        other = other[keep] if paired else other
    return LabelledBatch(
        request_ids=tuple(ids),
        units=tuple(units),
        rows=rows_of,
        labels=labels_of,
        answer=answer,
        paired=other if paired else None,
        looks=np.asarray(looks, dtype=np.int64) if looks else None,
    )
