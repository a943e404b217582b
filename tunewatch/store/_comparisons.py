"""Sequential comparisons in the store: tests with persisted state, the requests each test
consumed, the looks (a time series per challenger) and live-split sample-ratio checks.

Functions take a SQLAlchemy ``Connection`` like the other store modules;
:class:`ComparisonStore` wraps a :class:`Store` and runs each in one transaction. This
module is that front and the names the comparison loop imports; the functions are in one
module per concern:

- ``_comparison_tests``: a pair's test created, read, settled and reopened;
- ``_comparison_looks``: looks stored with the requests they consumed, and read back;
- ``_split_checks`` and ``_split_counts``: a live split's sample-ratio checks, unit
  totals and arm counts;
- ``_comparison_rows``: the rows, watermarks and the labelled batches that
  ``_labelled`` reads.

It also passes on the row readers of tests and looks (``_test``, ``_look``) that the
dashboard's queries import from here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from .._errors import ConflictError
from ._comparison_looks import _look as _look
from ._comparison_looks import (
    consume_unscored,
    history,
    latest_look,
    newest_consumed,
    record_look,
    scored_elsewhere,
    write_state,
)
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
    advanced,
    read_start,
)
from ._comparison_tests import (
    Replaces,
    finish_test,
    get_or_create_test,
    get_test,
    list_tests,
    reopen_test,
)
from ._comparison_tests import _test as _test
from ._engine import READ_ONLY_OPTION, transaction
from ._labelled import ValidRows, read_labelled
from ._split_checks import add_split_check, latest_split_check, unit_totals
from ._split_counts import count_split_arms
from ._store import Store

logger = logging.getLogger(__name__)


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
        arrived_from: datetime | None = None,
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
                arrived_from=arrived_from,
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
