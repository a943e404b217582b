"""Light reads of the evaluations and comparison tables for long histories.

``Store.list_evaluations`` decodes every payload into rows with timestamps; for a year of
hourly windows that alone costs a few hundred milliseconds per kind. Pages that must see
every window stream the payloads as text, decoded by orjson: the drift heatmap folds them
as they arrive; the latency and decay series read only ids and payloads
(:func:`stream_payloads`), pick the windows holding each bucket's extremes, then read
those windows' :func:`window_refs`. The A/B page reads the
newest comparison tests and, per test, evenly spaced looks picked by the database
(:func:`sampled_looks`). Read-only, through the store's transaction scope; the same SQL
runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, Integer, Select, Text, bindparam, case, cast, func, or_, select

from tunewatch.store import Store, VersionRow
from tunewatch.store._comparison_rows import ComparisonLookRow, ComparisonTestRow
from tunewatch.store._comparisons import _look as look_row
from tunewatch.store._comparisons import _test as test_row
from tunewatch.store._engine import READ_ONLY_OPTION, transaction
from tunewatch.store._registry_rows import _version as version_row
from tunewatch.store._registry_rows import _version_select as version_select
from tunewatch.store._schema import comparison_looks, comparison_tests, evaluations, model_versions


def _reader(store: Store) -> Engine:
    return store.engine.execution_options(**{READ_ONLY_OPTION: True})


@dataclass(frozen=True, slots=True)
class WindowRef:
    id: int
    window_end: datetime
    status: str
    alarm: bool


def window_ids(store: Store, model: str, kind: str, *, limit: int) -> list[int]:
    """The ids of the newest ``limit`` evaluations of ``kind``, oldest first (no payload is
    read: on SQLite the (model, kind, window_end) index answers alone)."""
    stmt = (
        select(evaluations.c.id)
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_window_ids") as conn:
        ids = [int(r[0]) for r in conn.execute(stmt)]
    ids.reverse()
    return ids


def _decode(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, from a writer that allowed them
        value = json.loads(text)
    return value if isinstance(value, dict) else {}


def stream_windows(
    store: Store, model: str, kind: str, *, limit: int, chunk: int = 500
) -> Iterator[tuple[WindowRef, dict[str, Any]]]:
    """The newest ``limit`` evaluations of ``kind`` with their payloads, newest first,
    fetched ``chunk`` rows at a time, for a caller that folds every window as it goes and
    so holds one chunk, never every payload. Payloads are read as text and decoded by
    orjson, about a third of the JSON type's decoding time; ``alarm`` is the payload's."""
    stmt = (
        select(
            evaluations.c.id,
            evaluations.c.window_end,
            evaluations.c.status,
            cast(evaluations.c.payload, Text),
        )
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_stream_windows") as conn:
        for row in conn.execution_options(yield_per=chunk).execute(stmt):
            payload = _decode(row[3])
            ref = WindowRef(int(row[0]), row[1], str(row[2]), payload.get("alarm") is True)
            yield ref, payload


def stream_payloads(
    store: Store, model: str, kind: str, *, limit: int, chunk: int = 500
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The ids and payloads of the newest ``limit`` evaluations of ``kind``, newest first,
    fetched ``chunk`` rows at a time, for a caller that scans every window for a few
    values and then reads :func:`window_refs` of the few it keeps: no other column is read
    (converting a row's timestamp costs about as much as decoding its payload)."""
    stmt = (
        select(evaluations.c.id, cast(evaluations.c.payload, Text))
        .where(evaluations.c.model == model, evaluations.c.kind == kind)
        .order_by(evaluations.c.window_end.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    with transaction(_reader(store), "dashboard_stream_payloads") as conn:
        for row in conn.execution_options(yield_per=chunk).execute(stmt):
            yield int(row[0]), _decode(row[1])


def window_refs(store: Store, ids: Sequence[int]) -> dict[int, WindowRef]:
    """The :class:`WindowRef` of the evaluations ``ids`` (missing ids are left out)."""
    if not ids:
        return {}
    alarm = evaluations.c.payload["alarm"].as_boolean()
    stmt = select(evaluations.c.id, evaluations.c.window_end, evaluations.c.status, alarm).where(
        evaluations.c.id.in_(list(ids))
    )
    with transaction(_reader(store), "dashboard_window_refs") as conn:
        return {
            int(r[0]): WindowRef(int(r[0]), r[1], str(r[2]), bool(r[3])) for r in conn.execute(stmt)
        }


def newest_tests(store: Store, model: str, *, limit: int) -> tuple[list[ComparisonTestRow], int]:
    """The newest ``limit`` comparison tests of ``model`` (newest first) and how many
    tests it has in all."""
    stmt = (
        select(comparison_tests)
        .where(comparison_tests.c.model == model)
        .order_by(comparison_tests.c.id.desc())
        .limit(limit)
    )
    count = select(func.count()).where(comparison_tests.c.model == model)
    with transaction(_reader(store), "dashboard_newest_tests") as conn:
        rows = [test_row(r) for r in conn.execute(stmt)] if limit > 0 else []
        return rows, int(conn.execute(count).scalar_one())


def newest_versions(store: Store, model: str, *, limit: int) -> tuple[list[VersionRow], int]:
    """The newest ``limit`` versions of ``model`` (newest first) and how many it has in
    all: a model keeps every version a tuning job registered, each with its details."""
    stmt = (
        version_select()
        .where(model_versions.c.model == model)
        .order_by(model_versions.c.version.desc())
        .limit(limit)
    )
    count = select(func.count()).where(model_versions.c.model == model)
    with transaction(_reader(store), "dashboard_newest_versions") as conn:
        rows = [version_row(r) for r in conn.execute(stmt)] if limit > 0 else []
        return rows, int(conn.execute(count).scalar_one())


def versions_named(store: Store, model: str, versions: set[int]) -> dict[int, VersionRow]:
    """The versions ``versions`` of ``model`` by number (missing ones are left out)."""
    if not versions:
        return {}
    stmt = version_select().where(
        model_versions.c.model == model, model_versions.c.version.in_(sorted(versions))
    )
    with transaction(_reader(store), "dashboard_versions_named") as conn:
        return {v.version: v for v in map(version_row, conn.execute(stmt))}


def _sampled_looks_statement() -> Select[Any]:
    """Built once (its compiled form is cached): see :func:`sampled_looks`."""
    looks = comparison_looks.c
    ranked = (
        select(
            comparison_looks,
            (func.row_number().over(order_by=looks.id) - 1).label("look_rank"),
            func.count().over().label("total"),
            func.min(case((looks.decision != "continue", looks.id))).over().label("decided"),
        )
        .where(
            looks.model == bindparam("model"),
            looks.challenger_version == bindparam("challenger"),
            looks.test_id == bindparam("test_id"),
        )
        .subquery()
    )
    rank, steps = ranked.c.look_rank, bindparam("steps", type_=Integer)
    gaps = func.nullif(ranked.c.total - 1, 0)  # NULL, not a division by zero, for one look
    return (
        select(ranked)
        .where(
            or_(
                ranked.c.total <= bindparam("max_points", type_=Integer),
                rank == 0,
                (rank * steps).op("/")(gaps) != ((rank - 1) * steps).op("/")(gaps),
                ranked.c.id == ranked.c.decided,
            )
        )
        .order_by(ranked.c.id)
    )


_SAMPLED_LOOKS = _sampled_looks_statement()


def sampled_looks(
    store: Store, test: ComparisonTestRow, *, max_points: int
) -> tuple[list[ComparisonLookRow], int]:
    """At most ``max_points`` evenly spaced looks of ``test`` (oldest first, always the
    first and the last) plus the first that decided (decision not ``continue``), and the
    test's number of looks. The database picks them, so a test's cost on the wire and in
    memory is bounded by ``max_points``, not by its looks.

    Of looks ranked ``r = 0 .. total - 1``, ``r`` is kept when ``r * (max_points - 1) //
    (total - 1)`` differs from ``r - 1``'s: the first of each of ``max_points - 1`` equal
    steps, which holds the last look too."""
    params = {
        "model": test.model,
        "challenger": test.challenger_version,
        "test_id": test.id,
        "steps": max_points - 1,
        "max_points": max_points,
    }
    with transaction(_reader(store), "dashboard_sampled_looks") as conn:
        rows = list(conn.execute(_SAMPLED_LOOKS, params))
    return [look_row(r) for r in rows], int(rows[0].total) if rows else 0
