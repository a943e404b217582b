"""Retention: delete the scoring log's records received before a cut-off.

A request goes with its labels (which reference it) and its outputs (which do not: a
shadow output may be written before its request row), labels first. Outputs older than
the cut-off whose request is gone (never written, or purged) go too. Each batch is its
own short write transaction, and on SQLite the purge then pauses (as long as the batch
took, at least ``SQLITE_MIN_PAUSE_S``) before taking the write lock again: taken at once,
it starved the recorder's group commit, the lease renewal and the checkpointer, whose
busy handler polls the lock every 100 ms at most, and scoring stalled for 30 s. The
outputs whose request is gone are looked for in a read transaction (a scan of the
model's outputs), outside the write lock, and deleted by key in a write one that checks
again that their request is still missing and that they are older than the cut-off;
a round that deletes none of those it found ends the search (the next run looks again).

Each batch's cut-off is capped, in its own write transaction, by ``keep_from`` (the
earliest training window start of a queued or running job): a job recording its start
while the purge runs keeps its window. The search for outputs whose request is gone is
capped the same way, in its read transaction: capped in the delete alone, a batch of
such outputs between the two cut-offs was found, kept, and found again, for ever. Every
``AUDIT_EVERY`` batches a progress entry (``purge_records_progress``, the run's counts so
far) is appended in the batch's own transaction, so a purge killed part-way leaves at
most that many batches unaudited; a purge stopped between batches (``stop``: the
daemon's shutdown) is audited with what it deleted (``outcome: stopped``).

The requests an open ROC AUC test (``delong``) consumed are kept, with their labels and
outputs, whatever their age: each of its looks replays the earlier ones from them
(:func:`~tunewatch.comparison._looks.delong_update`), so with them purged the test could
never look again, or looked on fewer requests than it recorded. Like a job's window,
they are left out in each batch's own write transaction, and go at the first run after
the test is decided or closed; a test takes at most its planned looks, so they are
bounded. A paired test or a watch keeps its sums in its state and holds none.

The rows saying which tests consumed a request (``comparison_consumed``, one per test
that read it) go with the request, in its batch's transaction, found by the request's
index: kept, they were the table's every row for ever (at 100 labelled requests a second
and two challengers, 17 million a day). A kept request keeps its rows, every test's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, exists, func, select, tuple_

from .._errors import StoreError
from ._audit import append_audit_in
from ._schema import comparison_consumed, comparison_tests, labels, models, outputs, requests

logger = logging.getLogger(__name__)

#: Ids per ``IN`` list: within every SQLite build's limit on bound parameters.
_CHUNK = 500
#: The shortest pause after each SQLite batch: longer than the busy handler's longest
#: sleep between two polls of the lock (100 ms), so a writer waiting for the lock polls
#: while it is free.
SQLITE_MIN_PAUSE_S = 0.15
#: Batches between two progress entries of a run (``PROGRESS_ACTION``).
AUDIT_EVERY = 10
PURGE_ACTION = "purge_records"
PROGRESS_ACTION = "purge_records_progress"

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


def sqlite_pause(batch_s: float) -> float:
    """The pause after a SQLite batch that took ``batch_s``: as long, at least
    ``SQLITE_MIN_PAUSE_S`` (the write lock is free at least half the time)."""
    return max(batch_s, SQLITE_MIN_PAUSE_S)


def purge_and_audit(
    write: Transaction,
    read: Transaction,
    *,
    before: datetime,
    batch: int,
    actor: str,
    keep_from: Callable[[Connection], datetime | None] | None = None,
    pause: Callable[[float], float] | None = None,
    stop: threading.Event | None = None,
    committed: Callable[[PurgeCounts], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PurgeCounts:
    """:func:`purge_records`, audited once a run (``purge_records`` by ``actor``: the
    cut-off and counts) and every ``AUDIT_EVERY`` batches in the batch's transaction
    (``purge_records_progress``, the counts so far); a run that fails after deleting rows
    is audited with what it deleted and the error, and the error raised; one that
    ``stop`` ends between batches, with what it deleted and ``outcome: stopped``.

    After each batch commits, ``committed`` is told the running total, then the run
    waits ``pause(seconds the batch took)`` (none without ``pause``), cut short by
    ``stop``."""
    done = PurgeCounts()
    batches = 0
    stopped = False
    started = clock()

    def details(**more: Any) -> dict[str, Any]:
        return {"before": before.isoformat(), "counts": asdict(done), **more}

    def in_batch(conn: Connection, total: PurgeCounts) -> None:
        nonlocal batches
        batches += 1
        if batches % AUDIT_EVERY == 0:
            append_audit_in(
                conn,
                actor=actor,
                action=PROGRESS_ACTION,
                target="records",
                details={"before": before.isoformat(), "counts": asdict(total)},
            )

    def proceed(total: PurgeCounts) -> bool:
        nonlocal done, started, stopped
        done = total
        if committed is not None:
            committed(total)
        wait = 0.0 if pause is None else pause(clock() - started)
        if stop is not None and (stop.is_set() or (wait > 0 and stop.wait(wait))):
            stopped = True
            return False
        if stop is None and wait > 0:
            time.sleep(wait)
        started = clock()
        return True

    def audit(**more: Any) -> None:
        with write() as conn:
            append_audit_in(
                conn, actor=actor, action=PURGE_ACTION, target="records", details=details(**more)
            )

    try:
        purge_records(
            write,
            read,
            before=before,
            batch=batch,
            keep_from=keep_from,
            in_batch=in_batch,
            proceed=proceed,
        )
    except StoreError as exc:  # every store failure is translated to one
        if done != PurgeCounts():
            try:
                audit(error=f"{type(exc).__name__}: {exc}")
            except StoreError as audit_exc:  # the error raised says why
                exc.add_note(f"the rows purged before it were not audited: {audit_exc}")
        raise
    if stopped:
        audit(outcome="stopped")
    else:
        audit()
    return done


def purge_records(
    write: Transaction,
    read: Transaction,
    *,
    before: datetime,
    batch: int,
    keep_from: Callable[[Connection], datetime | None] | None = None,
    in_batch: Callable[[Connection, PurgeCounts], object] | None = None,
    proceed: Callable[[PurgeCounts], bool] | None = None,
) -> PurgeCounts:
    """Delete every model's requests received before ``before`` with their labels and
    outputs, and outputs created before it whose request is gone, ``batch`` requests
    (or outputs) per ``write()`` transaction; ``read()`` opens the read transactions.

    In each transaction (the searches' too) the cut-off is capped by ``keep_from`` (read
    there), and in each write transaction ``in_batch`` is given the connection and the
    running total with that batch's rows. After each commit ``proceed`` is given the
    running total; when it returns false the run ends there, with what it deleted.

    The requests an open DeLong test consumed stay (see the module docstring)."""
    if batch < 1:
        raise ValueError(f"`batch` must be at least 1, got {batch}")
    with read() as conn:
        names = list(conn.execute(select(models.c.name).order_by(models.c.name)).scalars())
        kept = _replayed_before(conn, before)
    for model, n in kept:
        logger.info(
            "purge keeps %d requests of model=%s received before %s: an open ROC AUC "
            "(DeLong) test replays its earlier looks from them; they go at the first run "
            "after it ends",
            n,
            model,
            before.isoformat(),
        )
    total = PurgeCounts()

    logged: list[datetime] = []  # the held start last logged

    def cut_off(conn: Connection) -> datetime:
        held = None if keep_from is None else keep_from(conn)
        if held is None or held >= before:
            return before
        if logged != [held]:
            logger.info(
                "purge cut-off moved back from %s to %s in its batch: a queued or running "
                "job trains on the window from then",
                before.isoformat(),
                held.isoformat(),
            )
            logged[:] = [held]
        return held

    def tell(conn: Connection, counts: PurgeCounts) -> None:
        if in_batch is not None:
            in_batch(conn, total + counts)

    for model in names:
        while True:
            with write() as conn:
                counts, full = _purge_request_batch(conn, model, before=cut_off(conn), batch=batch)
                tell(conn, counts)
            total += counts
            if proceed is not None and not proceed(total):
                return total
            if not full:
                break
        while True:
            # searched below the cut-off the delete uses: below ``before`` instead, a batch
            # of outputs between it and a held cut-off was found and kept for ever
            with read() as conn:
                keys = _orphan_outputs(conn, model, before=cut_off(conn), batch=batch)
            if not keys:
                break
            with write() as conn:
                counts = PurgeCounts(outputs=_delete_orphans(conn, model, keys, cut_off(conn)))
                tell(conn, counts)
            total += counts
            if proceed is not None and not proceed(total):
                return total
            # none of those found deleted (their requests written, or the cut-off held
            # back further, meanwhile): the next search could find them again; what
            # remains is the next run's
            if len(keys) < batch or counts.outputs == 0:
                break
    return total


def _purge_request_batch(
    conn: Connection, model: str, *, before: datetime, batch: int
) -> tuple[PurgeCounts, bool]:
    """Up to ``batch`` of ``model``'s oldest requests before ``before``, deleted with
    their labels, outputs and consumed rows; and whether the batch was full (more may
    remain)."""
    ids = list(
        conn.execute(
            select(requests.c.request_id)
            .where(requests.c.model == model, requests.c.received_at < before, ~_replayed())
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
        _delete_consumed(conn, model, chunk)
        n_requests = _deleted(conn, requests, model, chunk)
        counts += PurgeCounts(requests=n_requests, outputs=n_outputs, labels=n_labels)
    return counts, len(ids) == batch


def _replayed() -> ColumnElement[bool]:
    """Whether the request (of the statement's ``requests`` row) is one an open DeLong
    test of its model consumed: found from the model's open tests by the consumed rows'
    key (test, request), not by a scan of every test's consumed rows."""
    return exists().where(
        comparison_tests.c.model == requests.c.model,
        comparison_tests.c.kind == "delong",
        comparison_tests.c.status == "open",
        comparison_consumed.c.test_id == comparison_tests.c.id,
        comparison_consumed.c.request_id == requests.c.request_id,
    )


def _replayed_before(conn: Connection, before: datetime) -> list[tuple[str, int]]:
    """Per model, how many requests received before ``before`` the purge keeps for open
    DeLong tests (:func:`_replayed`)."""
    rows = conn.execute(
        select(requests.c.model, func.count())
        .select_from(
            comparison_tests.join(
                comparison_consumed, comparison_consumed.c.test_id == comparison_tests.c.id
            ).join(
                requests,
                and_(
                    requests.c.model == comparison_tests.c.model,
                    requests.c.request_id == comparison_consumed.c.request_id,
                ),
            )
        )
        .where(
            comparison_tests.c.kind == "delong",
            comparison_tests.c.status == "open",
            requests.c.received_at < before,
        )
        .group_by(requests.c.model)
        .order_by(requests.c.model)
    ).all()
    return [(str(model), int(n)) for model, n in rows]


def _deleted(conn: Connection, table: Table, model: str, ids: Sequence[str]) -> int:
    result = conn.execute(delete(table).where(table.c.model == model, table.c.request_id.in_(ids)))
    return int(result.rowcount)


def _delete_consumed(conn: Connection, model: str, ids: Sequence[str]) -> None:
    """Delete the rows saying which of ``model``'s tests consumed these requests (the
    model's tests: another model's request may have the same id), found by the request's
    index: by the primary key, which leads with the test, PostgreSQL scanned the table."""
    tests = select(comparison_tests.c.id).where(comparison_tests.c.model == model)
    conn.execute(
        delete(comparison_consumed).where(
            comparison_consumed.c.test_id.in_(tests),
            comparison_consumed.c.request_id.in_(ids),
        )
    )


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
