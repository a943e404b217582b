"""Sequential comparisons in the store: tests with persisted state, the requests each test
consumed, the looks (a time series per challenger) and live-split sample-ratio checks.

Functions take a SQLAlchemy ``Connection`` like the other store modules;
:class:`ComparisonStore` wraps a :class:`Store` and runs each in one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, Row, and_, exists, func, select, update

from .._errors import ConflictError, NotFoundError
from ._canonical import canonical_json
from ._engine import READ_ONLY_OPTION, dialect_insert, transaction
from ._schema import (
    comparison_consumed,
    comparison_looks,
    comparison_tests,
    labels,
    outputs,
    requests,
    split_checks,
)
from ._store import Store
from ._types import utcnow

TestKind = Literal["paired", "delong", "rollback_watch", "split"]
TestStatus = Literal["open", "decided", "closed"]
ANSWERING_ROLES = ("champion", "external")


@dataclass(frozen=True, slots=True)
class ComparisonTestRow:
    """One test of ``challenger_version`` against ``champion_version`` (for a rollback
    watch: the new champion against the one it replaced) and its persisted state."""

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
    but contribute no rows.
    """

    request_ids: tuple[str, ...]
    rows: np.ndarray  # int64 index into request_ids per row
    labels: np.ndarray  # float64 per row
    answer: np.ndarray  # float32 [rows, k]
    paired: np.ndarray | None  # float32 [rows, k2]
    looks: np.ndarray | None  # int64 per request: the look that consumed it (consumed reads)

    @property
    def n_rows(self) -> int:
        return int(self.labels.shape[0])


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


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(canonical_json(dict(obj)))
    return result


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
) -> tuple[ComparisonTestRow, bool]:
    """The pair's test, created open with ``state`` if there is none; ``(test, created)``."""
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
) -> ComparisonTestRow:
    """Store one look atomically: the requests it consumed, the look row and the test's new
    state. Refused (``ConflictError``, code ``comparison_moved_on``) when another process
    looked at this test since ``test`` was read, so no request is ever fed twice."""
    now = utcnow()
    looks = test.looks + 1
    values: dict[str, Any] = {
        "n": look.n,
        "looks": looks,
        "state": _clean(state),
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


def finish_test(
    conn: Connection,
    test_id: int,
    *,
    status: TestStatus,
    outcome: Mapping[str, Any] | None = None,
    decision: str | None = None,
) -> ComparisonTestRow:
    """Set a test's status and what the loop did about it (promotion, refusal, rollback)."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if outcome is not None:
        values["outcome"] = _clean(outcome)
    if decision is not None:
        values["decision"] = decision
    current = get_test(conn, test_id)
    if status != "open" and current.decided_at is None:
        values["decided_at"] = now
    conn.execute(update(comparison_tests).where(comparison_tests.c.id == test_id).values(**values))
    return get_test(conn, test_id)


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


# -- reading labelled traffic ---------------------------------------------------------------


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
) -> LabelledBatch:
    """Labelled requests that ``answered_by`` answered (with one of ``roles``; by default
    champion or external), with
    ``paired_with``'s output on the same requests when given (requests without it are
    left out). ``unconsumed_by`` leaves out requests a test already consumed;
    ``consumed_by`` reads only those, with the look that consumed each.

    Ordered by label arrival (then request id), so a test's reads are reproducible.
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
        requests.c.n_rows,
        labels.c.value,
        labels.c.received_at,
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
    if unconsumed_by is not None:
        stmt = stmt.where(
            ~exists().where(
                comparison_consumed.c.test_id == unconsumed_by,
                comparison_consumed.c.request_id == requests.c.request_id,
            )
        )
    if received_from is not None:
        stmt = stmt.where(requests.c.received_at >= received_from)
    if received_before is not None:
        stmt = stmt.where(requests.c.received_at < received_before)
    if newest_first:
        stmt = stmt.order_by(labels.c.received_at.desc(), requests.c.request_id.desc())
    else:
        stmt = stmt.order_by(labels.c.received_at, requests.c.request_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return _assemble(list(conn.execute(stmt)), paired=paired_with is not None)


def _assemble(rows: list[Row[Any]], *, paired: bool) -> LabelledBatch:
    ids: list[str] = []
    index: list[int] = []
    ys: list[float] = []
    answers: list[np.ndarray] = []
    others: list[np.ndarray] = []
    looks: list[int] = []
    k = rows[0].a_cols if rows else 1
    k2 = rows[0].b_cols if rows and paired else 1
    for r in rows:
        position = len(ids)
        ids.append(r.request_id)
        if "look" in r._fields:
            looks.append(int(r.look))
        n = int(r.n_rows)
        y = _label_values(r.value, n)
        if y is None or r.a_rows != n or r.a_cols != k:
            continue  # malformed for this comparison: read (to be consumed), not used
        if paired and (r.b_rows != n or r.b_cols != k2):
            continue
        index.extend([position] * n)
        ys.extend(y)
        answers.append(np.frombuffer(r.a_values, dtype=np.float32).reshape(n, k))
        if paired:
            others.append(np.frombuffer(r.b_values, dtype=np.float32).reshape(n, k2))
    return LabelledBatch(
        request_ids=tuple(ids),
        rows=np.asarray(index, dtype=np.int64),
        labels=np.asarray(ys, dtype=np.float64),
        answer=np.concatenate(answers) if answers else np.empty((0, k), np.float32),
        paired=(np.concatenate(others) if others else np.empty((0, k2), np.float32))
        if paired
        else None,
        looks=np.asarray(looks, dtype=np.int64) if looks else None,
    )


def _label_values(value: Any, n: int) -> list[float] | None:
    if isinstance(value, list):
        return [float(v) for v in value] if len(value) == n else None
    if isinstance(value, int | float) and not isinstance(value, bool) and n == 1:
        return [float(value)]
    return None


def count_split_arms(
    conn: Connection,
    *,
    model: str,
    champion_version: int,
    challenger_version: int,
    since: datetime | None,
) -> tuple[int, int]:
    """Requests received since ``since`` answered by each arm of a live split:
    ``(champion, challenger)``.

    The champion arm is every request with an output of ``champion_version`` in role
    ``champion``; the challenger arm every request with an output of
    ``challenger_version`` and no output in role ``champion`` (the inference path records
    the split challenger's answer without a champion answer).
    """
    champion_answer = exists().where(
        outputs.c.model == requests.c.model,
        outputs.c.request_id == requests.c.request_id,
        outputs.c.role == "champion",
        outputs.c.version == champion_version,
    )
    any_champion = outputs.alias("any_champion")
    challenger_answer = and_(
        exists().where(
            outputs.c.model == requests.c.model,
            outputs.c.request_id == requests.c.request_id,
            outputs.c.version == challenger_version,
        ),
        ~exists().where(
            any_champion.c.model == requests.c.model,
            any_champion.c.request_id == requests.c.request_id,
            any_champion.c.role == "champion",
        ),
    )
    base = select(func.count()).select_from(requests).where(requests.c.model == model)
    if since is not None:
        base = base.where(requests.c.received_at >= since)
    n_champion = int(conn.execute(base.where(champion_answer)).scalar_one())
    n_challenger = int(conn.execute(base.where(challenger_answer)).scalar_one())
    return n_champion, n_challenger


# -- split checks ---------------------------------------------------------------------------


def _split(row: Row[Any]) -> SplitCheckRow:
    return SplitCheckRow(
        id=int(row.id),
        model=row.model,
        champion_version=int(row.champion_version),
        challenger_version=int(row.challenger_version),
        salt=row.salt,
        percent=float(row.percent),
        n_champion=int(row.n_champion),
        n_challenger=int(row.n_challenger),
        chi2=float(row.chi2),
        p_value=float(row.p_value),
        mismatch=bool(row.mismatch),
        created_at=row.created_at,
    )


def add_split_check(
    conn: Connection,
    *,
    model: str,
    champion_version: int,
    challenger_version: int,
    salt: str,
    percent: float,
    n_champion: int,
    n_challenger: int,
    chi2: float,
    p_value: float,
    mismatch: bool,
) -> SplitCheckRow:
    row_id = conn.execute(
        split_checks.insert()
        .values(
            model=model,
            champion_version=champion_version,
            challenger_version=challenger_version,
            salt=salt,
            percent=percent,
            n_champion=n_champion,
            n_challenger=n_challenger,
            chi2=chi2,
            p_value=p_value,
            mismatch=mismatch,
            created_at=utcnow(),
        )
        .returning(split_checks.c.id)
    ).scalar_one()
    row = conn.execute(select(split_checks).where(split_checks.c.id == row_id)).one()
    return _split(row)


def latest_split_check(
    conn: Connection, model: str, *, salt: str | None = None, challenger_version: int | None = None
) -> SplitCheckRow | None:
    stmt = select(split_checks).where(split_checks.c.model == model)
    if salt is not None:
        stmt = stmt.where(split_checks.c.salt == salt)
    if challenger_version is not None:
        stmt = stmt.where(split_checks.c.challenger_version == challenger_version)
    row = conn.execute(stmt.order_by(split_checks.c.id.desc()).limit(1)).first()
    return None if row is None else _split(row)


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
    ) -> tuple[ComparisonTestRow, bool]:
        with self._tx("get_or_create_comparison") as conn:
            return get_or_create_test(
                conn,
                model=model,
                kind=kind,
                champion_version=champion_version,
                challenger_version=challenger_version,
                correction=correction,
                state=state,
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
    ) -> ComparisonTestRow:
        with self._tx("record_comparison_look") as conn:
            return record_look(conn, test, consumed=consumed, look=look, state=state, status=status)

    def finish_test(
        self,
        test_id: int,
        *,
        status: TestStatus,
        outcome: Mapping[str, Any] | None = None,
        decision: str | None = None,
    ) -> ComparisonTestRow:
        with self._tx("finish_comparison") as conn:
            return finish_test(conn, test_id, status=status, outcome=outcome, decision=decision)

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
            )

    def count_split_arms(
        self, *, model: str, champion_version: int, challenger_version: int, since: datetime | None
    ) -> tuple[int, int]:
        with self._read("count_split_arms") as conn:
            return count_split_arms(
                conn,
                model=model,
                champion_version=champion_version,
                challenger_version=challenger_version,
                since=since,
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
    "SplitCheckRow",
    "TestKind",
    "TestStatus",
]
