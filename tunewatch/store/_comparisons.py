"""Sequential comparisons in the store: tests with persisted state, the requests each test
consumed, the looks (a time series per challenger) and live-split sample-ratio checks.

Functions take a SQLAlchemy ``Connection`` like the other store modules;
:class:`ComparisonStore` wraps a :class:`Store` and runs each in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Row, Text, cast, or_, select, update

from .._errors import ConflictError, NotFoundError
from ._comparison_rows import (
    ANSWERING_ROLES,
    LATE_COMMIT_MARGIN,
    ComparisonLookRow,
    ComparisonTestRow,
    LabelledBatch,
    LookValues,
    OrderKey,
    SplitCheckRow,
    TestKind,
    TestStatus,
    UnitTotal,
    Watermark,
    _clean,
    _finite,
    advanced,
    read_start,
)
from ._engine import READ_ONLY_OPTION, dialect_insert, transaction
from ._labelled import ValidRows, read_labelled
from ._schema import (
    comparison_consumed,
    comparison_looks,
    comparison_tests,
    outputs,
    requests,
)
from ._split_checks import add_split_check, latest_split_check, unit_totals, write_unit_totals
from ._split_counts import count_split_arms
from ._store import Store
from ._types import utcnow

logger = logging.getLogger(__name__)

# -- tests ----------------------------------------------------------------------------------


def _test(row: Row[Any]) -> ComparisonTestRow:
    return ComparisonTestRow(
        id=int(row.id),
        model=row.model,
        kind=row.kind,
        champion_version=int(row.champion_version),
        challenger_version=int(row.challenger_version),
        status=row.status,
        decision=row.decision,
        correction=row.correction,
        n=int(row.n),
        looks=int(row.looks),
        state=dict(row.state),
        outcome=None if row.outcome is None else dict(row.outcome),
        created_at=row.created_at,
        updated_at=row.updated_at,
        decided_at=row.decided_at,
        promotion_id=int(row.promotion_id),
    )


def get_or_create_test(
    conn: Connection,
    *,
    model: str,
    kind: TestKind,
    champion_version: int,
    challenger_version: int,
    correction: str | None,
    state: Mapping[str, Any],
    promotion_id: int = 0,
) -> tuple[ComparisonTestRow, bool]:
    """The pair's test (a rollback watch's: of the promotion ``promotion_id``; a live
    split's: after the test ``promotion_id`` of the split's earlier settings, 0 for the
    pair's first), created open with ``state`` if there is none; ``(test, created)``."""
    now = utcnow()
    inserted = conn.execute(
        dialect_insert(conn, comparison_tests)
        .values(
            model=model,
            kind=kind,
            champion_version=champion_version,
            challenger_version=challenger_version,
            status="open",
            decision="continue",
            correction=correction,
            n=0,
            looks=0,
            state=_clean(state),
            outcome=None,
            created_at=now,
            updated_at=now,
            decided_at=None,
            promotion_id=promotion_id,
        )
        .on_conflict_do_nothing()
        .returning(comparison_tests.c.id)
    ).first()
    row = conn.execute(
        select(comparison_tests).where(
            comparison_tests.c.model == model,
            comparison_tests.c.kind == kind,
            comparison_tests.c.champion_version == champion_version,
            comparison_tests.c.challenger_version == challenger_version,
            comparison_tests.c.promotion_id == promotion_id,
        )
    ).one()
    return _test(row), inserted is not None


def get_test(conn: Connection, test_id: int) -> ComparisonTestRow:
    row = conn.execute(select(comparison_tests).where(comparison_tests.c.id == test_id)).first()
    if row is None:
        raise NotFoundError(f"comparison test {test_id} does not exist")
    return _test(row)


def list_tests(
    conn: Connection,
    model: str,
    *,
    kind: TestKind | None = None,
    champion_version: int | None = None,
    status: TestStatus | None = None,
) -> list[ComparisonTestRow]:
    """Oldest first."""
    stmt = select(comparison_tests).where(comparison_tests.c.model == model)
    if kind is not None:
        stmt = stmt.where(comparison_tests.c.kind == kind)
    if champion_version is not None:
        stmt = stmt.where(comparison_tests.c.champion_version == champion_version)
    if status is not None:
        stmt = stmt.where(comparison_tests.c.status == status)
    return [_test(r) for r in conn.execute(stmt.order_by(comparison_tests.c.id))]


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


#: What settling a test may replace: no outcome yet (``"unset"``); that or a promotion
#: blocked by a sample-ratio mismatch, which is retried (``"retryable"``); anything
#: (``"any"``: the promotion that happened, which only one run can have made).
Replaces = Literal["unset", "retryable", "any"]


def _unset() -> ColumnElement[bool]:
    # a test is created with the JSON ``null`` (SQLAlchemy's JSON type writes ``None`` so)
    outcome = comparison_tests.c.outcome
    return or_(outcome.is_(None), cast(outcome, Text) == "null")


def finish_test(
    conn: Connection,
    test_id: int,
    *,
    status: TestStatus,
    outcome: Mapping[str, Any] | None = None,
    decision: str | None = None,
    replaces: Replaces = "retryable",
) -> ComparisonTestRow | None:
    """Set a test's status and what the loop did about it (promotion, refusal, rollback),
    as a compare-and-set on its outcome: only while nothing settled it yet (see
    :data:`Replaces`). ``None`` when another finisher settled it first: nothing is
    written, and its caller records nothing either. Two runs comparing one model at
    once — a scheduled one and a ``POST /compare``, or the CLI on another host — both
    acted on one decided test: two notices, and a promotion's outcome overwritten with
    "closed: the champion changed"."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if outcome is not None:
        values["outcome"] = _clean(outcome)
    if decision is not None:
        values["decision"] = decision
    current = get_test(conn, test_id)
    if status != "open" and current.decided_at is None:
        values["decided_at"] = now
    stmt = update(comparison_tests).where(comparison_tests.c.id == test_id)
    if replaces == "unset":
        stmt = stmt.where(_unset())
    elif replaces == "retryable":
        blocked = comparison_tests.c.outcome["action"].as_string() == "blocked_srm"
        stmt = stmt.where(or_(_unset(), blocked))
    if conn.execute(stmt.values(**values)).rowcount != 1:
        return None
    return get_test(conn, test_id)


def reopen_test(conn: Connection, test_id: int, *, reason: str) -> ComparisonTestRow | None:
    """Open again a test closed with ``reason`` (its challenger left shadow and returned):
    its state continues where it stopped, which an always-valid test allows (the pause
    added no pair). ``None`` when it does not stand closed so (another run reopened it)."""
    changed = conn.execute(
        update(comparison_tests)
        .where(
            comparison_tests.c.id == test_id,
            comparison_tests.c.status == "closed",
            comparison_tests.c.outcome["reason"].as_string() == reason,
        )
        .values(status="open", outcome=None, decided_at=None, updated_at=utcnow())
    ).rowcount
    return get_test(conn, test_id) if changed == 1 else None


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


# -- looks ----------------------------------------------------------------------------------


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


# -- the front ------------------------------------------------------------------------------


class ComparisonStore:
    """The comparison tables over a :class:`Store`'s engine, one transaction per call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._engine = store.engine
        self._read_engine = store.engine.execution_options(**{READ_ONLY_OPTION: True})

    @contextmanager
    def _tx(self, operation: str) -> Iterator[Connection]:
        with transaction(self._engine, operation) as conn:
            yield conn

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        with transaction(self._read_engine, operation) as conn:
            yield conn

    def get_or_create_test(
        self,
        *,
        model: str,
        kind: TestKind,
        champion_version: int,
        challenger_version: int,
        correction: str | None,
        state: Mapping[str, Any],
        promotion_id: int = 0,
    ) -> tuple[ComparisonTestRow, bool]:
        """See :func:`get_or_create_test`."""
        with self._tx("get_or_create_comparison") as conn:
            return get_or_create_test(
                conn,
                model=model,
                kind=kind,
                champion_version=champion_version,
                challenger_version=challenger_version,
                correction=correction,
                state=state,
                promotion_id=promotion_id,
            )

    def get_test(self, test_id: int) -> ComparisonTestRow:
        with self._read("get_comparison") as conn:
            return get_test(conn, test_id)

    def list_tests(
        self,
        model: str,
        *,
        kind: TestKind | None = None,
        champion_version: int | None = None,
        status: TestStatus | None = None,
    ) -> list[ComparisonTestRow]:
        with self._read("list_comparisons") as conn:
            return list_tests(
                conn, model, kind=kind, champion_version=champion_version, status=status
            )

    def record_look(
        self,
        test: ComparisonTestRow,
        *,
        consumed: Sequence[str],
        look: LookValues,
        state: Mapping[str, Any],
        status: TestStatus,
        units: Sequence[UnitTotal] = (),
        watermarks: Mapping[str, Watermark | None] | None = None,
    ) -> ComparisonTestRow:
        """See :func:`record_look`."""
        with self._tx("record_comparison_look") as conn:
            return record_look(
                conn,
                test,
                consumed=consumed,
                look=look,
                state=state,
                status=status,
                units=units,
                watermarks=watermarks,
            )

    def unit_totals(
        self, test_id: int, arm: str, unit_keys: Sequence[str]
    ) -> dict[str, tuple[int, float]]:
        """See :func:`unit_totals`."""
        with self._read("split_unit_totals") as conn:
            return unit_totals(conn, test_id, arm, unit_keys)

    def consume_unscored(
        self,
        test: ComparisonTestRow,
        request_ids: Sequence[str],
        watermarks: Mapping[str, Watermark | None] | None = None,
    ) -> None:
        """See :func:`consume_unscored`; a concurrent look makes it a no-op (logged)."""
        if not request_ids:
            return
        try:
            with self._tx("consume_unscored") as conn:
                consume_unscored(conn, test, request_ids=request_ids, watermarks=watermarks)
        except ConflictError as exc:
            logger.warning("%s", exc.message)

    def finish_test(
        self,
        test_id: int,
        *,
        status: TestStatus,
        outcome: Mapping[str, Any] | None = None,
        decision: str | None = None,
    ) -> ComparisonTestRow:
        """Settle a test unless another finisher did (see :func:`finish_test`); the test
        as it stands afterwards, unchanged when it was settled already. A caller that
        records anything after settling uses :meth:`settle_test`, which tells."""
        done = self.settle_test(test_id, status=status, outcome=outcome, decision=decision)
        if done is not None:
            return done
        current = self.get_test(test_id)
        logger.info(
            "comparison test %d was settled already (%s); left as it is", test_id, current.outcome
        )
        return current

    def settle_test(
        self,
        test_id: int,
        *,
        status: TestStatus,
        outcome: Mapping[str, Any] | None = None,
        decision: str | None = None,
        replaces: Replaces = "retryable",
    ) -> ComparisonTestRow | None:
        """See :func:`finish_test`: ``None`` when another finisher settled the test first."""
        with self._tx("finish_comparison") as conn:
            return finish_test(
                conn, test_id, status=status, outcome=outcome, decision=decision, replaces=replaces
            )

    def reopen_test(self, test_id: int, *, reason: str) -> ComparisonTestRow | None:
        """See :func:`reopen_test`."""
        with self._tx("reopen_comparison") as conn:
            return reopen_test(conn, test_id, reason=reason)

    def write_state(self, test: ComparisonTestRow, state: Mapping[str, Any]) -> ComparisonTestRow:
        """See :func:`write_state`."""
        with self._tx("write_comparison_state") as conn:
            return write_state(conn, test, state=state)

    def newest_consumed(self, test: ComparisonTestRow) -> datetime | None:
        """See :func:`newest_consumed`."""
        with self._read("newest_consumed") as conn:
            return newest_consumed(conn, test)

    def history(
        self,
        model: str,
        challenger_version: int,
        *,
        kind: TestKind | None = None,
        limit: int = 10_000,
    ) -> list[ComparisonLookRow]:
        with self._read("comparison_history") as conn:
            return history(conn, model, challenger_version, kind=kind, limit=limit)

    def latest_look(self, test_id: int) -> ComparisonLookRow | None:
        with self._read("latest_comparison_look") as conn:
            return latest_look(conn, test_id)

    def scored_elsewhere(self, model: str, version: int, *, since: datetime, newest: int) -> bool:
        """See :func:`scored_elsewhere`."""
        with self._read("scored_elsewhere") as conn:
            return scored_elsewhere(conn, model, version, since=since, newest=newest)

    def read_labelled(
        self,
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
        valid_rows: ValidRows | None = None,
    ) -> LabelledBatch:
        """See :func:`read_labelled`."""
        with self._read("read_labelled") as conn:
            return read_labelled(
                conn,
                model=model,
                answered_by=answered_by,
                paired_with=paired_with,
                unconsumed_by=unconsumed_by,
                consumed_by=consumed_by,
                received_from=received_from,
                received_before=received_before,
                newest_first=newest_first,
                limit=limit,
                roles=roles,
                alone=alone,
                keyed=keyed,
                matured_before=matured_before,
                order_from=order_from,
                valid_rows=valid_rows,
            )

    def count_split_arms(
        self, *, model: str, challenger_version: int, since: datetime | None
    ) -> tuple[int, int]:
        """See :func:`~tunewatch.store._split_counts.count_split_arms`: the scan in a read
        transaction, the new units in a write transaction."""
        return count_split_arms(
            lambda: self._read("count_split_arms"),
            lambda: self._tx("count_split_arms"),
            model=model,
            challenger_version=challenger_version,
            since=since,
            margin=LATE_COMMIT_MARGIN,
        )

    def add_split_check(self, **kwargs: Any) -> SplitCheckRow:
        """See :func:`add_split_check` (same keyword arguments)."""
        with self._tx("add_split_check") as conn:
            return add_split_check(conn, **kwargs)

    def latest_split_check(
        self, model: str, *, salt: str | None = None, challenger_version: int | None = None
    ) -> SplitCheckRow | None:
        with self._read("latest_split_check") as conn:
            return latest_split_check(conn, model, salt=salt, challenger_version=challenger_version)


__all__ = [
    "ComparisonLookRow",
    "ComparisonStore",
    "ComparisonTestRow",
    "LabelledBatch",
    "LookValues",
    "OrderKey",
    "Replaces",
    "SplitCheckRow",
    "TestKind",
    "TestStatus",
    "UnitTotal",
    "Watermark",
    "advanced",
    "read_start",
]
