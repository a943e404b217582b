"""The scoring log: requests, per-version outputs and ground-truth labels.

``write_records`` is the hot path (a group-commit thread calls it with batches of
1-256 requests): one transaction, one multi-row ``INSERT ... ON CONFLICT DO NOTHING
RETURNING`` for the requests and one multi-row insert for the outputs. Rows are sent in
primary-key order so concurrent batches on PostgreSQL lock keys in the same order and
cannot deadlock each other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Row, func, select

from . import _run_tallies
from ._canonical import canonical_json
from ._engine import dialect_insert
from ._schema import labels, outputs, requests
from ._types import (
    LabelItem,
    LabelRow,
    LabelStatus,
    OutputRecord,
    RequestRecord,
    Role,
    RunTally,
    Source,
    utcnow,
)

_Key = tuple[str, str]
_CHUNK = 500
# Rows (or ids) per statement on SQLite's hot path: a power of two, and 9 x 256 variables
# stay far below SQLite's limit (32,766 since 3.32).
_ROWS_PER_STATEMENT = 256
#: New labels inserted per write transaction: a 10k-label batch in one held SQLite's write
#: lock ~150 ms, scoring's p99 going from 2.4 ms to 190 ms behind it (38 ms behind batches
#: of a thousand).
LABELS_PER_TRANSACTION = 1000


def write_records(
    conn: Connection,
    new_requests: Sequence[RequestRecord],
    new_outputs: Sequence[OutputRecord],
    shadow_outputs: Sequence[OutputRecord] = (),
    tallies: Sequence[RunTally] = (),
) -> list[bool]:
    """PostgreSQL (and any SQLAlchemy connection): insert requests, skipping ids already
    stored, and outputs, and add ``tallies``, in the caller's transaction (see
    ``Store.write_records``)."""
    first = _first(new_requests)
    inserted = _insert_requests_returning(conn, first)
    _insert_outputs(conn, _kept_outputs(first, inserted, new_outputs, shadow_outputs))
    if tallies:
        _run_tallies.add_tallies(conn, tallies, utcnow())
    return _flags(new_requests, inserted)


def write_records_sqlite(
    cursor: Any,
    new_requests: Sequence[RequestRecord],
    new_outputs: Sequence[OutputRecord],
    shadow_outputs: Sequence[OutputRecord] = (),
    tallies: Sequence[RunTally] = (),
) -> list[bool]:
    """SQLite's hot path, on the driver cursor of a ``BEGIN IMMEDIATE`` transaction.

    Nobody else writes until the commit, so looking up which ids exist and inserting the
    rest is exact. Timestamps are stored as SQLAlchemy's SQLite ``DateTime`` stores them
    (naive UTC ISO text), so every other reader sees the same values.
    """
    first = _first(new_requests)
    existing: set[_Key] = set()
    by_model: dict[str, list[str]] = {}
    for model, request_id in first:
        by_model.setdefault(model, []).append(request_id)
    for model, ids in by_model.items():
        for i in range(0, len(ids), _ROWS_PER_STATEMENT):
            chunk = ids[i : i + _ROWS_PER_STATEMENT]
            # Padded to a power of two with repeats of the last id: a handful of
            # statement texts, which the connection's statement cache can keep prepared.
            padded = chunk + chunk[-1:] * (_pow2(len(chunk)) - len(chunk))
            cursor.execute(_select_existing_sql(len(padded)), (model, *padded))
            existing.update((model, r[0]) for r in cursor.fetchall())
    new = [k for k in sorted(first) if k not in existing]
    if new:
        _insert_rows(
            cursor,
            "INSERT INTO requests (model, request_id, received_at, source, n_rows, n_cols, "
            "inputs, unit_key) VALUES ",
            8,
            "",
            [
                (
                    r.model,
                    r.request_id,
                    sqlite_time(r.received_at),
                    r.source,
                    r.n_rows,
                    r.n_cols,
                    r.inputs,
                    r.unit_key,
                )
                for r in (first[k] for k in new)
            ],
        )
    inserted = set(new)
    kept = sorted(
        _kept_outputs(first, inserted, new_outputs, shadow_outputs),
        key=lambda o: (o.model, o.request_id, o.version),
    )
    if kept:
        _insert_rows(
            cursor,
            "INSERT INTO outputs (model, request_id, version, role, latency_s, n_rows, n_cols, "
            '"values", created_at) VALUES ',
            9,
            " ON CONFLICT DO NOTHING",
            [
                (
                    o.model,
                    o.request_id,
                    o.version,
                    o.role,
                    o.latency_s,
                    o.n_rows,
                    o.n_cols,
                    o.values,
                    sqlite_time(o.created_at),
                )
                for o in kept
            ],
        )
    if tallies:
        _run_tallies.add_tallies_sqlite(cursor, tallies, sqlite_time(utcnow()))
    return _flags(new_requests, inserted)


def _insert_rows(
    cursor: Any, head: str, width: int, tail: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Multi-row ``INSERT``s in power-of-two chunks (at most ``_ROWS_PER_STATEMENT``).

    ``executemany`` binds, steps and resets the statement once per row, releasing and
    re-taking the GIL around every step. One statement per chunk steps once; the
    power-of-two sizes keep the statement texts few (9 per table), so the connection's
    statement cache (128 entries, shared with the store's other statements) can keep
    them prepared. Under load this cut the writer thread's CPU per request by
    8–15 % in three of four interleaved A/B runs.
    """
    i = 0
    while i < len(rows):
        n = min(_ROWS_PER_STATEMENT, _pow2_floor(len(rows) - i))
        chunk = rows[i : i + n]
        cursor.execute(_insert_sql(head, width, tail, n), [v for row in chunk for v in row])
        i += n


@functools.cache
def _insert_sql(head: str, width: int, tail: str, n_rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([row] * n_rows) + tail


@functools.cache
def _select_existing_sql(n_ids: int) -> str:
    marks = ", ".join("?" * n_ids)
    return f"SELECT request_id FROM requests WHERE model = ? AND request_id IN ({marks})"


def _pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (``n`` >= 1)."""
    return 1 << (n - 1).bit_length()


def _pow2_floor(n: int) -> int:
    """The largest power of two <= ``n`` (``n`` >= 1)."""
    return 1 << (n.bit_length() - 1)


def sqlite_time(value: datetime) -> str:
    """``value`` as SQLAlchemy's SQLite ``DateTime`` stores it."""
    # What UTCDateTime + SQLAlchemy's SQLite DateTime write: naive UTC, microseconds.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"


def _kept_outputs(
    first: dict[_Key, RequestRecord],
    inserted: set[_Key],
    new_outputs: Sequence[OutputRecord],
    shadow_outputs: Sequence[OutputRecord],
) -> list[OutputRecord]:
    """The outputs to write: a replayed request's own outputs are not; shadow ones are."""
    duplicates = {k for k in first if k not in inserted}
    kept = [o for o in new_outputs if (o.model, o.request_id) not in duplicates]
    kept.extend(shadow_outputs)
    return kept


def _first(new_requests: Sequence[RequestRecord]) -> dict[_Key, RequestRecord]:
    first: dict[_Key, RequestRecord] = {}
    for r in new_requests:
        first.setdefault((r.model, r.request_id), r)
    return first


def _flags(new_requests: Sequence[RequestRecord], inserted: set[_Key]) -> list[bool]:
    flags: list[bool] = []
    seen: set[_Key] = set()
    for r in new_requests:
        key = (r.model, r.request_id)
        flags.append(key in inserted and key not in seen)
        seen.add(key)
    return flags


def _insert_requests_returning(conn: Connection, first: dict[_Key, RequestRecord]) -> set[_Key]:
    """PostgreSQL: one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, exact even
    when several replicas insert the same id at once."""
    if not first:
        return set()
    stmt = (
        dialect_insert(conn, requests)
        .on_conflict_do_nothing(index_elements=[requests.c.model, requests.c.request_id])
        .returning(requests.c.model, requests.c.request_id)
    )
    rows = conn.execute(stmt, [_request_params(first[k]) for k in sorted(first)])
    return {(r.model, r.request_id) for r in rows}


def _insert_outputs(conn: Connection, new_outputs: Sequence[OutputRecord]) -> None:
    if not new_outputs:
        return
    ordered = sorted(new_outputs, key=lambda o: (o.model, o.request_id, o.version))
    stmt = dialect_insert(conn, outputs).on_conflict_do_nothing(
        index_elements=[outputs.c.model, outputs.c.request_id, outputs.c.version]
    )
    conn.execute(stmt, [_output_params(o) for o in ordered])


def get_request(conn: Connection, model: str, request_id: str) -> RequestRecord | None:
    row = conn.execute(
        select(requests).where(requests.c.model == model, requests.c.request_id == request_id)
    ).one_or_none()
    return None if row is None else _request(row)


def get_outputs(conn: Connection, model: str, request_id: str) -> list[OutputRecord]:
    rows = conn.execute(
        select(outputs)
        .where(outputs.c.model == model, outputs.c.request_id == request_id)
        .order_by(outputs.c.version)
    )
    return [_output(r) for r in rows]


class ExternalRecord(NamedTuple):
    """A stored request with its outputs of role ``external`` (the serving stack's)."""

    request: RequestRecord
    outputs: list[OutputRecord]


def get_external_records(
    conn: Connection, model: str, request_ids: Sequence[str]
) -> dict[str, ExternalRecord]:
    """The stored requests among ``request_ids`` by id, each with its ``external``
    outputs (in version order): two ``IN`` reads per chunk of ids, not two per id."""
    found: dict[str, ExternalRecord] = {}
    for chunk in _chunks(sorted(set(request_ids))):
        rows = conn.execute(
            select(requests).where(requests.c.model == model, requests.c.request_id.in_(chunk))
        )
        found.update((r.request_id, ExternalRecord(_request(r), [])) for r in rows)
        answers = conn.execute(
            select(outputs)
            .where(
                outputs.c.model == model,
                outputs.c.request_id.in_(chunk),
                outputs.c.role == "external",
            )
            .order_by(outputs.c.request_id, outputs.c.version)
        )
        for a in answers:
            if a.request_id in found:  # an answer whose request is not stored: left out
                found[a.request_id].outputs.append(_output(a))
    return found


def count_requests(
    conn: Connection, model: str, *, start: datetime | None = None, end: datetime | None = None
) -> int:
    """``model``'s requests (empty ones too), of those received in ``[start, end)`` when
    given: counted on the (model, received_at) index alone."""
    stmt = select(func.count()).select_from(requests).where(requests.c.model == model)
    if start is not None:
        stmt = stmt.where(requests.c.received_at >= start)
    if end is not None:
        stmt = stmt.where(requests.c.received_at < end)
    return int(conn.execute(stmt).scalar_one())


def count_outputs(conn: Connection, model: str, version: int | None) -> int:
    stmt = select(func.count()).select_from(outputs).where(outputs.c.model == model)
    if version is not None:
        stmt = stmt.where(outputs.c.version == version)
    return int(conn.execute(stmt).scalar_one())


def request_ids(conn: Connection, model: str) -> set[str]:
    rows = conn.execute(select(requests.c.request_id).where(requests.c.model == model))
    return {r.request_id for r in rows}


@dataclass(eq=False)
class LabelBatch:
    """A feedback batch classified against what is stored (:func:`classify_labels`, in
    a read transaction), then its new labels inserted (:func:`insert_labels`, in write
    transactions of at most :data:`LABELS_PER_TRANSACTION` labels, only when there are
    any): the write lock is held for the inserts alone, a short while each.

    A label must fit its request: one number per row, or a number for a one-row request
    (``shape_mismatch`` otherwise, nothing stored). Labels are compared as numbers once
    spread over the rows, so ``1``, ``[1]`` and ``1.0`` for a one-row request are one label.
    """

    items: Sequence[LabelItem]
    rows: dict[str, int]  # n_rows of each request found
    stored: dict[str, tuple[str, float | None]]  # what each stored label compares by
    fitted: list[LabelItem | None]  # each item as stored, None when it does not fit
    to_insert: dict[str, LabelItem]  # the first fitting item of each unlabelled request
    created: set[str] = field(default_factory=set)

    def statuses(self) -> list[LabelStatus]:
        statuses: list[LabelStatus] = []
        reported_created: set[str] = set()
        for item, fit in zip(self.items, self.fitted, strict=True):
            rid = item.request_id
            if rid not in self.rows:
                statuses.append("unknown_request")
            elif fit is None:
                statuses.append("shape_mismatch")
            elif rid in self.created and rid not in reported_created:
                reported_created.add(rid)
                statuses.append("created")
            elif self.stored[rid] == (_label_key(fit.value), fit.outcome):
                statuses.append("duplicate")
            else:
                statuses.append("conflict")
        return statuses

    def insert_chunks(self) -> list[list[str]]:
        """The ids of the labels to insert, in key order, at most
        :data:`LABELS_PER_TRANSACTION` a chunk: each chunk is one write transaction."""
        ids = sorted(self.to_insert)
        n = LABELS_PER_TRANSACTION
        return [ids[i : i + n] for i in range(0, len(ids), n)]


def classify_labels(conn: Connection, model: str, items: Sequence[LabelItem]) -> LabelBatch:
    """``items`` against the requests and labels stored: read only."""
    ids = sorted({i.request_id for i in items})
    rows: dict[str, int] = {}
    stored: dict[str, tuple[str, float | None]] = {}
    for chunk in _chunks(ids):
        found = conn.execute(
            select(requests.c.request_id, requests.c.n_rows).where(
                requests.c.model == model, requests.c.request_id.in_(chunk)
            )
        )
        rows.update((r.request_id, int(r.n_rows)) for r in found)
    for chunk in _chunks(sorted(rows)):
        stored.update(_stored_labels(conn, model, chunk, rows))
    fitted: list[LabelItem | None] = [
        _fitted(item, rows[item.request_id]) if item.request_id in rows else None for item in items
    ]
    to_insert: dict[str, LabelItem] = {}
    for fit in fitted:
        if fit is not None and fit.request_id not in stored:
            to_insert.setdefault(fit.request_id, fit)
    return LabelBatch(items, rows, stored, fitted, to_insert)


def insert_labels(conn: Connection, model: str, batch: LabelBatch, ids: Sequence[str]) -> None:
    """Insert the new labels of ``ids`` (keys of ``batch.to_insert``, a chunk of
    :meth:`LabelBatch.insert_chunks`), recording in ``batch`` what was created and what
    another transaction stored first (read back and compared, so concurrent replays are
    idempotent). Each request is looked up again, locked ``FOR KEY SHARE`` (PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` serialises writers): one a retention purge deleted since
    the batch was classified is an ``unknown_request``, and a purge deleting one now waits
    for us, instead of the insert failing its foreign key and refusing the whole batch."""
    present: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        present.update(
            conn.execute(
                select(requests.c.request_id)
                .where(requests.c.model == model, requests.c.request_id.in_(chunk))
                .with_for_update(read=True, key_share=True)
            ).scalars()
        )
    for rid in set(ids) - present:  # purged since
        del batch.rows[rid]
        del batch.to_insert[rid]
    new = {rid: batch.to_insert[rid] for rid in sorted(present)}
    if not new:
        return
    now = utcnow()
    stmt = (
        dialect_insert(conn, labels)
        .on_conflict_do_nothing(index_elements=[labels.c.model, labels.c.request_id])
        .returning(labels.c.request_id)
    )
    params = [
        {
            "model": model,
            "request_id": rid,
            "value": _label_value(it.value),
            "outcome": it.outcome,
            "received_at": now,
        }
        for rid, it in new.items()
    ]
    created = set(conn.execute(stmt, params).scalars())
    batch.created |= created
    for rid, it in new.items():
        if rid in created:
            batch.stored[rid] = (_label_key(it.value), it.outcome)
    lost = sorted(set(new) - created)  # inserted concurrently by another
    for chunk in _chunks(lost):
        batch.stored.update(_stored_labels(conn, model, chunk, batch.rows))


def _fitted(item: LabelItem, n_rows: int) -> LabelItem | None:
    """``item`` as stored for a request of ``n_rows`` rows (a one-row request's label is a
    number, ``-0.0`` is ``0.0``, the outcome a float), or ``None`` if it does not fit."""
    values = item.value if isinstance(item.value, list) else [item.value]
    if len(values) != n_rows or (not isinstance(item.value, list) and n_rows != 1):
        return None
    floats = [float(v) + 0.0 for v in values]  # + 0.0 turns -0.0 into 0.0
    outcome = None if item.outcome is None else float(item.outcome) + 0.0
    return LabelItem(item.request_id, floats[0] if n_rows == 1 else floats, outcome)


def get_label(conn: Connection, model: str, request_id: str) -> LabelRow | None:
    row = conn.execute(
        select(labels).where(labels.c.model == model, labels.c.request_id == request_id)
    ).one_or_none()
    if row is None:
        return None
    return LabelRow(
        model=row.model,
        request_id=row.request_id,
        value=_label_value(row.value),
        outcome=row.outcome,
        received_at=row.received_at,
    )


def _stored_labels(
    conn: Connection, model: str, ids: Sequence[str], n_rows: dict[str, int]
) -> dict[str, tuple[str, float | None]]:
    """What each stored label of ``ids`` is compared by: normalised as :func:`_fitted`
    does for its request's ``n_rows`` (labels stored before normalisation, such as a
    one-row request's ``[1.0]``, included). The labels alone are read: joined to their
    requests, a model new to PostgreSQL's statistics had every request scanned per id."""
    rows = conn.execute(
        select(labels.c.request_id, labels.c.value, labels.c.outcome).where(
            labels.c.model == model, labels.c.request_id.in_(ids)
        )
    )
    stored: dict[str, tuple[str, float | None]] = {}
    for r in rows:
        item = LabelItem(r.request_id, _label_value(r.value), r.outcome)
        fit = _fitted(item, n_rows[r.request_id]) or item  # one that never fitted: as stored
        stored[r.request_id] = (_label_key(fit.value), fit.outcome)
    return stored


def _label_value(value: Any) -> float | list[float]:
    """Labels are numbers: read them back as floats on every backend.

    (Labels stored before they were normalised to floats may hold JSON integers, ``[1]``.)
    """
    if isinstance(value, list):
        return [float(v) for v in value]
    return float(value)


def _label_key(value: Any) -> str:
    """What two labels must share to be the same label: canonical JSON of the floats."""
    return canonical_json(_label_value(value))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _request_params(r: RequestRecord) -> dict[str, Any]:
    return {
        "model": r.model,
        "request_id": r.request_id,
        "received_at": r.received_at,
        "source": r.source,
        "n_rows": r.n_rows,
        "n_cols": r.n_cols,
        "inputs": r.inputs,
        "unit_key": r.unit_key,
    }


def _output_params(o: OutputRecord) -> dict[str, Any]:
    return {
        "model": o.model,
        "request_id": o.request_id,
        "version": o.version,
        "role": o.role,
        "latency_s": o.latency_s,
        "n_rows": o.n_rows,
        "n_cols": o.n_cols,
        "values": o.values,
        "created_at": o.created_at,
    }


def _output(row: Row[Any]) -> OutputRecord:
    return OutputRecord(
        model=row.model,
        request_id=row.request_id,
        version=row.version,
        role=cast(Role, row.role),
        latency_s=row.latency_s,
        n_rows=row.n_rows,
        n_cols=row.n_cols,
        values=bytes(row._mapping["values"]),
        created_at=row.created_at,
    )


def _request(row: Row[Any]) -> RequestRecord:
    return RequestRecord(
        model=row.model,
        request_id=row.request_id,
        received_at=row.received_at,
        source=cast(Source, row.source),
        n_rows=row.n_rows,
        n_cols=row.n_cols,
        inputs=bytes(row.inputs),
        unit_key=row.unit_key,
    )
