"""Sequential comparisons' looks and the requests each test consumed: a look stored with
the requests it consumed and the test's new state, as a compare-and-set on the test's
look count so that no request is fed twice (so are unscorable requests and a state
without a look); the looks read back (a time series per challenger); when the newest
request a test consumed was received; and whether a version answered requests elsewhere
(mirror mode). Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from .._errors import ConflictError
from ._comparison_rows import (
    ComparisonLookRow,
    ComparisonTestRow,
    LookValues,
    TestKind,
    TestStatus,
    UnitTotal,
    Watermark,
    _clean,
    _finite,
    advanced,
)
from ._comparison_tests import get_test
from ._schema import comparison_consumed, comparison_looks, comparison_tests, outputs, requests
from ._split_checks import write_unit_totals
from ._types import utcnow


def record_look(
    conn: Connection,
    test: ComparisonTestRow,
    *,
    consumed: Sequence[str],
    look: LookValues,
    state: Mapping[str, Any],
    status: TestStatus,
    units: Sequence[UnitTotal] = (),
    watermarks: Mapping[str, Watermark | None] | None = None,
) -> ComparisonTestRow:
    """Store one look atomically: the requests it consumed, the look row, the test's new
    state and (a live split's) new unit totals. The state keeps the test's watermarks,
    each read's moved on to ``watermarks`` (the batches' last order keys: see
    :func:`~._comparison_rows.advanced`). Refused (``ConflictError``, code
    ``comparison_moved_on``) when another process looked at this test since ``test`` was
    read, so no request is ever fed twice."""
    now = utcnow()
    looks = test.looks + 1
    values: dict[str, Any] = {
        "n": look.n,
        "looks": looks,
        "state": _clean(advanced(state, test.state, watermarks or {})),
        "status": status,
        "decision": look.decision,
        "correction": look.correction,
        "updated_at": now,
    }
    if status != "open" and test.decided_at is None:
        values["decided_at"] = now
    changed = conn.execute(
        update(comparison_tests)
        .where(comparison_tests.c.id == test.id, comparison_tests.c.looks == test.looks)
        .values(**values)
    ).rowcount
    if changed != 1:
        raise ConflictError(
            f"comparison test {test.id} ({test.model} v{test.challenger_version} vs "
            f"v{test.champion_version}) was updated concurrently; look again",
            code="comparison_moved_on",
        )
    if consumed:
        conn.execute(
            comparison_consumed.insert(),
            [{"test_id": test.id, "request_id": rid, "look": looks} for rid in consumed],
        )
    write_unit_totals(conn, test.id, units)
    bootstrap = look.bootstrap_ci
    conn.execute(
        comparison_looks.insert().values(
            test_id=test.id,
            model=test.model,
            kind=test.kind,
            champion_version=test.champion_version,
            challenger_version=test.challenger_version,
            method=look.method,
            n=look.n,
            estimate=_finite(look.estimate),
            ci_low=_finite(look.ci_low),
            ci_high=_finite(look.ci_high),
            p_value=float(look.p_value),
            adjusted_p_value=float(look.adjusted_p_value),
            decision=look.decision,
            fixed_t_p=_finite(look.fixed_t_p),
            bootstrap_low=None if bootstrap is None else _finite(bootstrap[0]),
            bootstrap_high=None if bootstrap is None else _finite(bootstrap[1]),
            correction=look.correction,
            family_size=look.family_size,
            created_at=now,
        )
    )
    return get_test(conn, test.id)


def consume_unscored(
    conn: Connection,
    test: ComparisonTestRow,
    *,
    request_ids: Sequence[str],
    watermarks: Mapping[str, Watermark | None] | None = None,
) -> None:
    """Mark requests that cannot be scored as consumed by ``test`` without a look (they add
    nothing to its evidence), so that they are not read again, moving its watermarks on
    like :func:`record_look`. Refused like :func:`record_look` when another process
    looked at the test since it was read."""
    values: dict[str, Any] = {"updated_at": utcnow()}
    if watermarks:
        values["state"] = _clean(advanced(test.state, test.state, watermarks))
    changed = conn.execute(
        update(comparison_tests)
        .where(comparison_tests.c.id == test.id, comparison_tests.c.looks == test.looks)
        .values(**values)
    ).rowcount
    if changed != 1:
        raise ConflictError(
            f"comparison test {test.id} was updated concurrently; look again",
            code="comparison_moved_on",
        )
    conn.execute(
        comparison_consumed.insert(),
        [{"test_id": test.id, "request_id": rid, "look": test.looks} for rid in request_ids],
    )


def write_state(
    conn: Connection, test: ComparisonTestRow, *, state: Mapping[str, Any]
) -> ComparisonTestRow:
    """Replace a test's state without a look (a step of the test that is no evidence),
    keeping its watermarks. Refused like :func:`record_look` when another process looked
    at the test since ``test`` was read."""
    changed = conn.execute(
        update(comparison_tests)
        .where(comparison_tests.c.id == test.id, comparison_tests.c.looks == test.looks)
        .values(state=_clean(advanced(state, test.state, {})), updated_at=utcnow())
    ).rowcount
    if changed != 1:
        raise ConflictError(
            f"comparison test {test.id} was updated concurrently; look again",
            code="comparison_moved_on",
        )
    return get_test(conn, test.id)


def newest_consumed(conn: Connection, test: ComparisonTestRow) -> datetime | None:
    """When the newest request ``test`` consumed was received (``None``: it consumed
    none). A test that follows it reads only requests received after it, none of its
    evidence (see :func:`~tunewatch.comparison._looks.successor_since`)."""
    return conn.execute(
        select(requests.c.received_at)
        .join(
            comparison_consumed,
            (requests.c.model == test.model)
            & (requests.c.request_id == comparison_consumed.c.request_id),
        )
        .where(comparison_consumed.c.test_id == test.id)
        .order_by(requests.c.received_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def _look(row: Row[Any]) -> ComparisonLookRow:
    boot = None
    if row.bootstrap_low is not None and row.bootstrap_high is not None:
        boot = (float(row.bootstrap_low), float(row.bootstrap_high))
    return ComparisonLookRow(
        id=int(row.id),
        test_id=int(row.test_id),
        model=row.model,
        kind=row.kind,
        champion_version=int(row.champion_version),
        challenger_version=int(row.challenger_version),
        method=row.method,
        n=int(row.n),
        estimate=row.estimate,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        p_value=float(row.p_value),
        adjusted_p_value=float(row.adjusted_p_value),
        decision=row.decision,
        fixed_t_p=row.fixed_t_p,
        bootstrap_ci=boot,
        correction=row.correction,
        family_size=int(row.family_size),
        created_at=row.created_at,
    )


def history(
    conn: Connection,
    model: str,
    challenger_version: int,
    *,
    kind: TestKind | None = None,
    limit: int = 10_000,
) -> list[ComparisonLookRow]:
    """Looks of ``challenger_version`` (every champion it was tested against), oldest first;
    the newest ``limit`` of them."""
    stmt = select(comparison_looks).where(
        comparison_looks.c.model == model,
        comparison_looks.c.challenger_version == challenger_version,
    )
    if kind is not None:
        stmt = stmt.where(comparison_looks.c.kind == kind)
    rows = [
        _look(r) for r in conn.execute(stmt.order_by(comparison_looks.c.id.desc()).limit(limit))
    ]
    rows.reverse()
    return rows


def latest_look(conn: Connection, test_id: int) -> ComparisonLookRow | None:
    row = conn.execute(
        select(comparison_looks)
        .where(comparison_looks.c.test_id == test_id)
        .order_by(comparison_looks.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _look(row)


def scored_elsewhere(
    conn: Connection, model: str, version: int, *, since: datetime, newest: int
) -> bool:
    """Whether ``version`` answered any of the model's newest ``newest`` requests received
    since ``since`` elsewhere: recorded by mirror mode (role ``external``), without a
    latency. A bounded read: the requests' time index, then each one's output by key."""
    recent = (
        select(requests.c.request_id)
        .where(requests.c.model == model, requests.c.received_at >= since)
        .order_by(requests.c.received_at.desc())
        .limit(newest)
        .subquery()
    )
    found = conn.execute(
        select(outputs.c.request_id)
        .join(recent, outputs.c.request_id == recent.c.request_id)
        .where(
            outputs.c.model == model,
            outputs.c.version == version,
            outputs.c.role == "external",
        )
        .limit(1)
    ).first()
    return found is not None
