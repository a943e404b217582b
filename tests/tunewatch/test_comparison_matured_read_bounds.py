"""With ``label_maturity_s``, a paired or DeLong test's look reads the requests newly
matured since its request-receipt watermark and the labels that arrived since its
label-arrival watermark (each less ``LATE_COMMIT_MARGIN``), not every matured request
since the test began: without a watermark each look walked the whole consumed history
(3.1 s a look at 100k consumed requests, quadratic over a months-long test). A matured
request whose label arrives after newer requests were consumed (a repayment posted after
maturity) is still read, from the label-arrival watermark."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, event, update
from sqlalchemy.sql import Select

from monitor.objectives import make_objective
from tunewatch.comparison import ComparisonConfig
from tunewatch.comparison._looks import delong_update, new_state, paired_update
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store, VersionRow
from tunewatch.store._comparison_rows import LATE_COMMIT_MARGIN, WATERMARKS
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow
from tunewatch.store._schema import labels

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
#: Before every request: the earliest label arrival a test of the pair reads.
LABELLED_FROM = T0 - timedelta(hours=2)
OBJECTIVE = make_objective("log_loss", task="binary")
#: Requests a day in the watermark test: a DeLong look needs 30 of each class.
PER_DAY = 80


def _settings(**extra: object) -> ComparisonConfig:
    return ComparisonConfig.model_validate(
        {"label_maturity_s": 86_400.0, "bootstrap_resamples": 0, **extra}
    )


def _champion() -> VersionRow:
    return VersionRow(
        id=1,
        model="m",
        version=1,
        artefact_sha256="0" * 64,
        hyperparameter_set_id="h",
        hyperparameters={},
        dataset_version=None,
        parent_version=None,
        study=None,
        stage="champion",
        details={},
        size_bytes=1,
        load_memory_bytes=None,
        created_at=LABELLED_FROM,
        stage_changed_at=LABELLED_FROM,
    )


@pytest.fixture
def store(m_store: Store) -> Store:
    return m_store


def _requests(
    store: Store, ids: range, at: datetime, apart: timedelta = timedelta(seconds=1)
) -> None:
    """Requests ``ids``, ``apart`` from ``at`` on, each answered by v1 and scored by v2
    (unlabelled: see :func:`_labelled`)."""
    reqs, outs = [], []
    for i in ids:
        x = np.full((1, 2), i, dtype=np.float32).tobytes()
        received = at + (i - ids.start) * apart
        reqs.append(RequestRecord("m", f"r{i}", received, "infer", 1, 2, x))
        p = 0.2 + 0.6 * ((i * 7) % 10) / 10
        outs.append(OutputRecord("m", f"r{i}", 1, "champion", 0.001, 1, 2, _proba(0.5)))
        outs.append(OutputRecord("m", f"r{i}", 2, "challenger", 0.002, 1, 2, _proba(p)))
    store.write_records(reqs, outs)


def _proba(p: float) -> bytes:
    return np.asarray([[1 - p, p]], dtype=np.float32).tobytes()


def _labelled(store: Store, ids: range, arrived: datetime) -> None:
    """The labels of ``ids`` (alternately 0 and 1), as if they had arrived at ``arrived``."""
    store.add_labels("m", [LabelItem(f"r{i}", float(i % 2)) for i in ids])
    with store.engine.begin() as conn:
        conn.execute(
            update(labels)
            .where(labels.c.model == "m", labels.c.request_id.in_([f"r{i}" for i in ids]))
            .values(received_at=arrived)
        )


def _test(comparisons: ComparisonStore, kind: str, settings: ComparisonConfig) -> ComparisonTestRow:
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="paired" if kind == "paired" else "delong",
        champion_version=1,
        challenger_version=2,
        correction=None,
        state=new_state(kind, settings, OBJECTIVE, 1, 2),
    )
    return test


def _look(
    store: Store, test: ComparisonTestRow, now: datetime, settings: ComparisonConfig
) -> tuple[ComparisonTestRow, list[str]]:
    """One look of ``test`` at ``now``, recorded: the test afterwards, the requests it read."""
    comparisons = ComparisonStore(store)
    if test.kind == "paired":
        update_ = paired_update(
            comparisons, store, now, "m", _champion(), test, OBJECTIVE, settings, LABELLED_FROM
        )
    else:
        update_ = delong_update(
            comparisons, now, "m", _champion(), test, settings, 1, LABELLED_FROM
        )
    if update_ is None:
        return comparisons.get_test(test.id), []
    consumed, values, state = update_
    saved = comparisons.record_look(
        test, consumed=consumed, look=values, state=state, status="open"
    )
    return saved, consumed


def _consumed(store: Store, test: ComparisonTestRow) -> list[str]:
    seen = ComparisonStore(store).read_labelled(
        model="m", answered_by=1, paired_with=2, consumed_by=test.id
    )
    return sorted(seen.request_ids)


def test_a_label_arriving_after_newer_requests_were_consumed_is_read_by_a_later_look(
    store: Store,
) -> None:
    settings = _settings()
    comparisons = ComparisonStore(store)
    test = _test(comparisons, "paired", settings)
    _requests(store, range(0, 40), T0)
    _labelled(store, range(1, 40), T0 + timedelta(hours=1))  # r0: its label is still to come
    test, first = _look(store, test, T0 + 2 * DAY, settings)
    assert len(first) == 39 and "r0" not in first
    _requests(store, range(40, 80), T0 + DAY)
    _labelled(store, range(40, 80), T0 + DAY + timedelta(hours=1))
    test, second = _look(store, test, T0 + 3 * DAY, settings)
    assert sorted(second) == sorted(f"r{i}" for i in range(40, 80))
    # r0's label arrives long after it matured and after newer requests were consumed
    _labelled(store, range(0, 1), T0 + 3 * DAY + timedelta(hours=2))
    _requests(store, range(80, 100), T0 + 3 * DAY)
    _labelled(store, range(80, 100), T0 + 3 * DAY + timedelta(hours=2))
    test, third = _look(store, test, T0 + 5 * DAY, settings)
    assert "r0" in third
    assert _consumed(store, test) == sorted(f"r{i}" for i in range(100))


@contextmanager
def _statements(store: Store) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The labelled reads of requests a test did not consume (SQL text and parameters)
    run on ``store`` within."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def listen(conn: Connection, clause: Any, multiparams: Any, params: Any, opts: Any) -> None:
        if not isinstance(clause, Select):
            return
        compiled = clause.compile(dialect=conn.dialect)
        text = str(compiled)
        if "comparison_consumed" in text and "JOIN labels" in text:
            if "JOIN comparison_consumed" not in text:  # not a read of consumed requests
                seen.append((text, dict(compiled.params)))

    event.listen(store.engine, "before_execute", listen)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_execute", listen)


def _bounds(statements: list[tuple[str, dict[str, Any]]]) -> set[datetime]:
    return {v for _, params in statements for v in params.values() if isinstance(v, datetime)}


@pytest.mark.parametrize("kind", ["paired", "delong"])
def test_a_looks_read_starts_at_its_watermarks_not_at_the_tests_start(
    store: Store, kind: str
) -> None:
    """The request-receipt watermark bounds the newly matured requests read, the
    label-arrival watermark the late labels: neither part walks the consumed history. A
    DeLong look reads as many requests as it is due: newly matured ones fill it, and its
    second part (labels arrived since) waits for a look they do not fill."""
    settings = _settings(delong_look_every=PER_DAY, delong_looks=10)
    comparisons = ComparisonStore(store)
    test = _test(comparisons, kind, settings)
    for day in range(5):  # five days of consumed history
        at = T0 + day * DAY
        ids = range(day * PER_DAY, (day + 1) * PER_DAY)
        _requests(store, ids, at)
        _labelled(store, ids, at + timedelta(hours=1))
        test, read = _look(store, test, at + DAY + timedelta(hours=2), settings)
        assert len(read) == PER_DAY
    marks = test.state[WATERMARKS]
    requests_from = {
        datetime.fromisoformat(m["at"]) - LATE_COMMIT_MARGIN
        for m in marks.values()
        if m["order"] == "request"
    }
    labels_from = {
        datetime.fromisoformat(m["at"]) - LATE_COMMIT_MARGIN
        for m in marks.values()
        if m["order"] == "label"
    }
    assert len(requests_from) == 1 and len(labels_from) == (kind == "paired")
    at = T0 + 5 * DAY
    ids = range(5 * PER_DAY, 6 * PER_DAY)
    _requests(store, ids, at)
    _labelled(store, ids, at + timedelta(hours=1))
    with _statements(store) as statements:
        test, read = _look(store, test, at + DAY + timedelta(hours=2), settings)
    assert len(read) == PER_DAY
    assert statements
    bounds = _bounds(statements)
    assert requests_from <= bounds  # requests.received_at >= the receipt watermark less margin
    assert labels_from <= bounds  # labels.received_at >= the arrival watermark less margin
    assert any("requests.received_at >=" in text for text, _ in statements)
    if kind == "paired":
        assert any("labels.received_at >=" in text for text, _ in statements)
    # the receipt watermark is four days past the test's start: the history is not walked
    assert min(requests_from) > T0 + 4 * DAY - 2 * LATE_COMMIT_MARGIN


def test_capped_reads_consume_every_pair_exactly_once(store: Store) -> None:
    """``max_batch`` caps each look; a watermark moves only past the rows a look read,
    so the looks that follow take the rest, late labels among them, each once."""
    settings = _settings(max_batch=7)
    comparisons = ComparisonStore(store)
    test = _test(comparisons, "paired", settings)
    apart = 2 * LATE_COMMIT_MARGIN  # a receipt watermark's margin rescues no late label
    _requests(store, range(0, 30), T0, apart)
    early = [i for i in range(30) if i % 3]
    late = [i for i in range(30) if not i % 3]
    for i in early:
        _labelled(store, range(i, i + 1), T0 + i * apart + timedelta(minutes=30))
    _requests(store, range(30, 60), T0 + 4 * DAY - timedelta(hours=1))
    _labelled(store, range(30, 60), T0 + 4 * DAY - timedelta(minutes=30))
    reads: list[str] = []
    now = T0 + 4 * DAY  # r0..r29 matured, r30..r59 not yet
    for _ in range(2):  # 14 of the 20 labelled so far
        test, read = _look(store, test, now, settings)
        assert len(read) == 7
        reads += read
    # the late labels of r0, r3, ... arrive after newer requests were consumed, hours
    # apart (past the margin of a watermark that went past a label not read)
    for i in late:
        _labelled(store, range(i, i + 1), now + i * apart)
    now += 4 * DAY  # r30..r59 matured too, and every late label in
    for _ in range(20):
        test, read = _look(store, test, now, settings)
        assert len(read) <= 7
        reads += read
    assert len(reads) == len(set(reads)) == 60
    assert _consumed(store, test) == sorted(f"r{i}" for i in range(60))
    assert test.n == 60
