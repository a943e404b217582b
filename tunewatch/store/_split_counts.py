"""A live split's units per arm, counted incrementally for its sample-ratio check.

A count belongs to one window of the split (units whose requests were received from
``since``) and one challenger; each model keeps one (``split_counts``), with the units it
counted (``split_count_units``). A count reads the requests received since the newest one
it saw, less ``margin`` (a request stamped earlier but committed later, or by a host whose
clock runs behind, is still read), keeps the units it has not counted yet and adds them.
Every tick used to count the distinct units of every request since the split's start:
938 ms on SQLite and 1,126 ms on PostgreSQL at 400k requests, growing with the split.

Going on with a count, the requests are read in a read transaction, so a SQLite writer
(the scoring log) is not held up by the scan; only the new units are written, with the
totals, in a short write transaction that checks the count did not move meanwhile
(another process counting) and otherwise reads again; after three tries it counts
under the count's lock, the scan included. A count afresh (the first of a
split, after an upgrade, or when the window or challenger changes) is counted in the
database, in one write transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exists,
    func,
    literal_column,
    select,
    update,
)

from ._engine import dialect_insert
from ._schema import outputs, requests, split_count_units, split_counts

# Counts another process moved between this one's read and its write: read again, and
# after these many, count under the count's lock (:func:`_count_locked`).
_ATTEMPTS = 3

Transaction = Callable[[], AbstractContextManager[Connection]]


@dataclass(frozen=True, slots=True)
class _Count:
    """A count as stored: its window and challenger, how far it read, its totals."""

    challenger_version: int
    since: datetime | None
    read_to: datetime | None
    n_champion: int
    n_challenger: int


def count_split_arms(
    read: Transaction,
    write: Transaction,
    *,
    model: str,
    challenger_version: int,
    since: datetime | None,
    margin: timedelta,
) -> tuple[int, int]:
    """Units whose requests received since ``since`` each arm of a live split answered:
    ``(champion, challenger)``, counted on from the model's stored count when it is of
    the same window and challenger, afresh otherwise (the stored count is replaced).

    The units are the requests' unit keys; a request without one was never split and
    counts in neither arm. The champion arm holds units with a request that has an output
    in role ``champion`` (of whichever version was champion then: counting only the
    current one's called every promotion during a split a mismatch); the challenger arm
    units with a request that has an output of ``challenger_version`` and no output in
    role ``champion`` (the inference path records the split challenger's answer, in the
    request's own commit, without a champion answer). Assignment is by unit, so units,
    not requests, are what the expected share is of.

    A request received more than ``margin`` before the newest one an earlier count read,
    and committed after that count, is never counted.
    """
    for _ in range(_ATTEMPTS):
        with read() as conn:
            stored = _stored(conn, model)
        if _fresh(stored, challenger_version, since):
            counts = _count_afresh(write, model, challenger_version, since, stored)
        else:
            assert stored is not None
            counts = _count_on(read, write, model, challenger_version, margin, stored)
        if counts is not None:
            return counts
    return _count_locked(write, model, challenger_version, since, margin)


def _fresh(stored: _Count | None, challenger_version: int, since: datetime | None) -> bool:
    """Whether the stored count is not of this window and challenger (or none is)."""
    return stored is None or (stored.challenger_version, stored.since) != (
        challenger_version,
        since,
    )


def _count_locked(
    write: Transaction,
    model: str,
    challenger_version: int,
    since: datetime | None,
    margin: timedelta,
) -> tuple[int, int]:
    """Count with the model's count locked from its read to its write, the scan included
    (on SQLite it holds the scoring log's writes meanwhile): after :data:`_ATTEMPTS`
    counts that other processes moved, this one cannot be moved. Failing instead answered
    a ``POST /compare`` overlapping the leader's tick with a 503."""
    with write() as conn:
        empty = dialect_insert(conn, split_counts).values(
            model=model,
            challenger_version=challenger_version,
            since=since,
            read_to=None,
            n_champion=0,
            n_challenger=0,
        )
        conn.execute(empty.on_conflict_do_nothing())
        stored = _stored(conn, model, lock=True)
        assert stored is not None  # inserted, or another process's
        if _fresh(stored, challenger_version, since) or stored.read_to is None:
            _reset(conn, model, challenger_version, since, stored)
            return _count_all(conn, model, challenger_version, since)
        start = _later(stored.since, _less(stored.read_to, margin))
        new, newest = _read_new(conn, model, challenger_version, start)
        return _add(conn, model, stored, new, newest)


def _count_afresh(
    write: Transaction,
    model: str,
    challenger_version: int,
    since: datetime | None,
    stored: _Count | None,
) -> tuple[int, int] | None:
    """Replace the model's count with one of this window and challenger, counted in the
    database in one write transaction (on SQLite it holds the scoring log's writes for
    the scan, as long as one recount took: after an upgrade, or when the window moves);
    ``None`` when another process moved the count meanwhile."""
    with write() as conn:
        if _stored(conn, model, lock=True) != stored:
            return None
        if not _reset(conn, model, challenger_version, since, stored):
            return None
        return _count_all(conn, model, challenger_version, since)


def _count_on(
    read: Transaction,
    write: Transaction,
    model: str,
    challenger_version: int,
    margin: timedelta,
    stored: _Count,
) -> tuple[int, int] | None:
    """Go on with the model's count: read the units of the requests since it read to
    (less ``margin``) that it does not hold yet, outside any write transaction, then add
    them; ``None`` when another process moved the count meanwhile."""
    start = _later(stored.since, _less(stored.read_to, margin))
    with read() as conn:
        new, newest = _read_new(conn, model, challenger_version, start)
    with write() as conn:
        if _stored(conn, model, lock=True) != stored:
            return None
        return _add(conn, model, stored, new, newest)


def _count_all(
    conn: Connection, model: str, challenger_version: int, since: datetime | None
) -> tuple[int, int]:
    """Count the units of the requests since ``since`` into the model's count, which
    holds none (just reset), in the database."""
    newest = _newest(conn, model, since)  # before the scan: it reads this far at least
    counts = (
        _insert_selected(conn, model, "champion", challenger_version, since),
        _insert_selected(conn, model, "challenger", challenger_version, since),
    )
    _save(conn, model, counts, newest)
    return counts


def _read_new(
    conn: Connection, model: str, challenger_version: int, start: datetime | None
) -> tuple[dict[str, list[str]], datetime | None]:
    """Each arm's units of the requests received from ``start`` that the model's count
    does not hold yet, and the newest of those requests' receipt."""
    new = {
        arm: _new_units(conn, model, arm, challenger_version, start)
        for arm in ("champion", "challenger")
    }
    return new, _newest(conn, model, start)


def _add(
    conn: Connection,
    model: str,
    stored: _Count,
    new: dict[str, list[str]],
    newest: datetime | None,
) -> tuple[int, int]:
    """Add ``new`` units to the model's count (``stored``, locked and unmoved)."""
    for arm, units in new.items():
        _insert_units(conn, model, arm, units)
    counts = (
        stored.n_champion + len(new["champion"]),
        stored.n_challenger + len(new["challenger"]),
    )
    _save(conn, model, counts, _later(stored.read_to, newest))
    return counts


def _save(conn: Connection, model: str, counts: tuple[int, int], read_to: datetime | None) -> None:
    conn.execute(
        update(split_counts)
        .where(split_counts.c.model == model)
        .values(n_champion=counts[0], n_challenger=counts[1], read_to=read_to)
    )


def _stored(conn: Connection, model: str, *, lock: bool = False) -> _Count | None:
    stmt = select(split_counts).where(split_counts.c.model == model)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return _Count(
        challenger_version=int(row.challenger_version),
        since=row.since,
        read_to=row.read_to,
        n_champion=int(row.n_champion),
        n_challenger=int(row.n_challenger),
    )


def _answered(arm: str, challenger_version: int) -> ColumnElement[bool]:
    champion_answer = exists().where(
        outputs.c.model == requests.c.model,
        outputs.c.request_id == requests.c.request_id,
        outputs.c.role == "champion",
    )
    if arm == "champion":
        return champion_answer
    return and_(
        exists().where(
            outputs.c.model == requests.c.model,
            outputs.c.request_id == requests.c.request_id,
            outputs.c.version == challenger_version,
        ),
        ~champion_answer,
    )


def _new_units(
    conn: Connection, model: str, arm: str, challenger_version: int, start: datetime | None
) -> list[str]:
    """The unit keys of ``arm`` among requests received from ``start`` that the model's
    count does not hold yet."""
    counted = exists().where(
        split_count_units.c.model == requests.c.model,
        split_count_units.c.arm == arm,
        split_count_units.c.unit_key == requests.c.unit_key,
    )
    stmt = _units(model, arm, challenger_version, start).where(~counted)
    return sorted(str(u) for u in conn.execute(stmt).scalars())


def _insert_selected(
    conn: Connection, model: str, arm: str, challenger_version: int, since: datetime | None
) -> int:
    """Put the units of ``arm`` of requests received from ``since`` in the model's count,
    which holds none; how many."""
    assert arm in ("champion", "challenger")  # a constant of the statement's text
    units = _units(model, arm, challenger_version, since).with_only_columns(
        requests.c.model, literal_column(f"'{arm}'"), requests.c.unit_key
    )
    conn.execute(split_count_units.insert().from_select(["model", "arm", "unit_key"], units))
    counted = select(func.count()).where(
        split_count_units.c.model == model, split_count_units.c.arm == arm
    )
    return int(conn.execute(counted).scalar_one())


def _units(model: str, arm: str, challenger_version: int, start: datetime | None) -> Select[Any]:
    """The distinct unit keys of ``arm`` among requests received from ``start``."""
    stmt = (
        select(requests.c.unit_key)
        .distinct()
        .where(
            requests.c.model == model,
            requests.c.unit_key.is_not(None),
            _answered(arm, challenger_version),
        )
    )
    if start is not None:
        stmt = stmt.where(requests.c.received_at >= start)
    return stmt


def _newest(conn: Connection, model: str, start: datetime | None) -> datetime | None:
    stmt = select(func.max(requests.c.received_at)).where(requests.c.model == model)
    if start is not None:
        stmt = stmt.where(requests.c.received_at >= start)
    newest: datetime | None = conn.execute(stmt).scalar_one()
    return newest


def _reset(
    conn: Connection,
    model: str,
    challenger_version: int,
    since: datetime | None,
    stored: _Count | None,
) -> bool:
    """Replace the model's count with an empty one of this window and challenger; whether
    it could (not when another process stored the model's first count meanwhile)."""
    values = {
        "challenger_version": challenger_version,
        "since": since,
        "read_to": None,
        "n_champion": 0,
        "n_challenger": 0,
    }
    if stored is None:
        insert = dialect_insert(conn, split_counts).values(model=model, **values)
        stmt = insert.on_conflict_do_nothing().returning(split_counts.c.model)
        return conn.execute(stmt).first() is not None
    conn.execute(delete(split_count_units).where(split_count_units.c.model == model))
    conn.execute(update(split_counts).where(split_counts.c.model == model).values(**values))
    return True


def _insert_units(conn: Connection, model: str, arm: str, units: list[str]) -> None:
    """Add ``units``, which the model's count does not hold, to its ``arm``: the caller
    holds the count (locked, unmoved since it read them), so a unit counted twice is a
    conflict, not a silent miscount."""
    if units:
        conn.execute(
            split_count_units.insert(),
            [{"model": model, "arm": arm, "unit_key": u} for u in units],
        )


def _less(at: datetime | None, margin: timedelta) -> datetime | None:
    return None if at is None else at - margin


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)
