"""Retention: delete the scoring log's records received before a cut-off.

A request goes with its labels (which reference it) and its outputs (which do not: a
shadow output may be written before its request row), labels first. Outputs older than
the cut-off whose request is gone (never written, or purged) go too. Each batch is its
own short write transaction, so SQLite's write lock, which the recorder's group commit
needs, is never held for a whole purge; the outputs whose request is gone are looked
for in a read transaction (a scan of the model's outputs), outside the write lock, and
deleted by key in a write one that checks again that their request is still missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, and_, delete, exists, select, tuple_

from .._errors import StoreError
from ._audit import append_audit_in
from ._schema import labels, models, outputs, requests

#: Ids per ``IN`` list: within every SQLite build's limit on bound parameters.
_CHUNK = 500

Transaction = Callable[[], AbstractContextManager[Connection]]


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """Rows one purge deleted, per table."""

    requests: int = 0
    outputs: int = 0
    labels: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(
            requests=self.requests + other.requests,
            outputs=self.outputs + other.outputs,
            labels=self.labels + other.labels,
        )


def purge_and_audit(
    write: Transaction, read: Transaction, *, before: datetime, batch: int, actor: str
) -> PurgeCounts:
    """:func:`purge_records`, audited once a run (``purge_records`` by ``actor``: the
    cut-off and counts); a run that fails after deleting rows is audited with what it
    deleted and the error, and the error raised."""
    done = PurgeCounts()

    def committed(total: PurgeCounts) -> None:
        nonlocal done
        done = total

    def audit(**more: str) -> None:
        details = {"before": before.isoformat(), "counts": asdict(done), **more}
        with write() as conn:
            append_audit_in(
                conn, actor=actor, action="purge_records", target="records", details=details
            )

    try:
        done = purge_records(write, read, before=before, batch=batch, committed=committed)
    except StoreError as exc:  # every store failure is translated to one
        if done != PurgeCounts():
            try:
                audit(error=f"{type(exc).__name__}: {exc}")
            except StoreError as audit_exc:  # the error raised says why
                exc.add_note(f"the rows purged before it were not audited: {audit_exc}")
        raise
    audit()
    return done


def purge_records(
    write: Transaction,
    read: Transaction,
    *,
    before: datetime,
    batch: int,
    committed: Callable[[PurgeCounts], object] | None = None,
) -> PurgeCounts:
    """Delete every model's requests received before ``before`` with their labels and
    outputs, and outputs created before it whose request is gone, ``batch`` requests
    (or outputs) per ``write()`` transaction; ``read()`` opens the read transactions.
    ``committed`` is told the running total after each write transaction commits."""
    if batch < 1:
        raise ValueError(f"`batch` must be at least 1, got {batch}")
    with read() as conn:
        names = list(conn.execute(select(models.c.name).order_by(models.c.name)).scalars())
    total = PurgeCounts()
    for model in names:
        while True:
            with write() as conn:
                counts, full = _purge_request_batch(conn, model, before=before, batch=batch)
            total += counts
            if committed is not None:
                committed(total)
            if not full:
                break
        while True:
            with read() as conn:
                keys = _orphan_outputs(conn, model, before=before, batch=batch)
            if keys:
                with write() as conn:
                    deleted = _delete_orphans(conn, model, keys, before)
                total += PurgeCounts(outputs=deleted)
                if committed is not None:
                    committed(total)
            if len(keys) < batch:
                break
    return total


def _purge_request_batch(
    conn: Connection, model: str, *, before: datetime, batch: int
) -> tuple[PurgeCounts, bool]:
    """Up to ``batch`` of ``model``'s oldest requests before ``before``, deleted with
    their labels and outputs; and whether the batch was full (more may remain)."""
    ids = list(
        conn.execute(
            select(requests.c.request_id)
            .where(requests.c.model == model, requests.c.received_at < before)
            .order_by(requests.c.received_at)
            .limit(batch)
            # locked (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers): a label
            # committed between the label and request deletes broke the requests' foreign
            # key and failed the whole run; now it waits, and is refused as for a purged
            # request
            .with_for_update()
        ).scalars()
    )
    counts = PurgeCounts()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        n_labels = _deleted(conn, labels, model, chunk)
        n_outputs = _deleted(conn, outputs, model, chunk)
        n_requests = _deleted(conn, requests, model, chunk)
        counts += PurgeCounts(requests=n_requests, outputs=n_outputs, labels=n_labels)
    return counts, len(ids) == batch


def _deleted(conn: Connection, table: Table, model: str, ids: Sequence[str]) -> int:
    result = conn.execute(delete(table).where(table.c.model == model, table.c.request_id.in_(ids)))
    return int(result.rowcount)


def _orphan_outputs(
    conn: Connection, model: str, *, before: datetime, batch: int
) -> list[tuple[str, int]]:
    """Up to ``batch`` (request id, version) keys of ``model``'s outputs created before
    ``before`` whose request is not stored."""
    request = exists().where(
        requests.c.model == outputs.c.model, requests.c.request_id == outputs.c.request_id
    )
    rows = conn.execute(
        select(outputs.c.request_id, outputs.c.version)
        .where(outputs.c.model == model, outputs.c.created_at < before, ~request)
        .limit(batch)
    ).all()
    return [(str(rid), int(version)) for rid, version in rows]


def _delete_orphans(
    conn: Connection, model: str, keys: Sequence[tuple[str, int]], before: datetime
) -> int:
    """Delete these outputs of ``model`` unless their request was written meanwhile."""
    request = exists().where(
        requests.c.model == outputs.c.model, requests.c.request_id == outputs.c.request_id
    )
    deleted = 0
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        result = conn.execute(
            delete(outputs).where(
                and_(
                    outputs.c.model == model,
                    tuple_(outputs.c.request_id, outputs.c.version).in_(chunk),
                    outputs.c.created_at < before,
                    ~request,
                )
            )
        )
        deleted += int(result.rowcount)
    return deleted
