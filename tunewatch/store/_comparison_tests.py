"""Sequential comparisons' tests: each pair's test created with its persisted state,
read, settled (a compare-and-set on its outcome, so that one run acts on a decision) and
reopened. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Row, Text, cast, or_, select, update

from .._errors import NotFoundError
from ._comparison_rows import ComparisonTestRow, TestKind, TestStatus, _clean
from ._engine import dialect_insert
from ._schema import comparison_tests
from ._types import utcnow


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
