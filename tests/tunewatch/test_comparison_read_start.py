"""Where a paired test of a champion reads its labels from: from when the champion took
its role, less ``CLOCK_MARGIN``, not from its registration. A version that shadowed 31
days before its promotion answered none of those days' requests as champion: its test
against each remaining challenger read from its registration walked every label since
(443k on PostgreSQL, 6.2 s) to find none, every run, until a request it answered as
champion was labelled. A test begun in the champion's earlier term (restored by a
rollback) still reads the pairs of that term."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonResult
from tunewatch.comparison._looks import CLOCK_MARGIN, pairable_since
from tunewatch.store import LabelItem
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._schema import labels, model_versions
from tunewatch.store._schema_comparisons import comparison_tests

#: v3 answering, v2 scoring as a challenger (``write`` makes the lowest version champion).
AS_CHAMPION = {3: "champion", 2: "challenger"}


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _registered_at(d: Daemon, version: int, at: datetime) -> None:
    with d.store.engine.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.model == MODEL, model_versions.c.version == version)
            .values(created_at=at, stage_changed_at=at)
        )


def _stage_changed_at(d: Daemon, versions: Sequence[int], at: datetime) -> None:
    with d.store.engine.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.model == MODEL, model_versions.c.version.in_(versions))
            .values(stage_changed_at=at)
        )


def _labels_arrived(d: Daemon, ids: range, at: datetime) -> None:
    """The labels of requests ``ids`` as if they had arrived at ``at``."""
    with d.store.engine.begin() as conn:
        conn.execute(
            update(labels)
            .where(labels.c.model == MODEL, labels.c.request_id.in_([f"r{i}" for i in ids]))
            .values(received_at=at)
        )


def _paired(results: list[ComparisonResult], challenger: int) -> ComparisonResult:
    [result] = [r for r in results if r.kind == "paired" and r.challenger_version == challenger]
    return result


def _equal(trained: list[ExampleModel], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and the answers of two equal versions (swapped at random): no test of
    them decides, and each run feeds what it reads."""
    t = traffic(trained, n, seed=5)
    swap = np.random.default_rng(1).random(n) < 0.5
    return (
        t.x,
        t.y,
        np.stack(
            [np.where(swap[:, None], t.gbm, t.logistic), np.where(swap[:, None], t.logistic, t.gbm)]
        ),
    )


def test_a_promoted_challengers_test_reads_from_its_promotion_not_its_registration(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    now = datetime.now(UTC)
    x, y, (a, b) = _equal(trained, 600)
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    _registered_at(daemon, 2, now - timedelta(days=40))
    _registered_at(daemon, 3, now - timedelta(days=31))
    # 31 days of shadow: v3 scored v1's requests as a challenger, labelled day by day
    for day in range(30):
        ids = range(10 * day, 10 * day + 10)
        s = slice(ids.start, ids.stop)
        at = now - timedelta(days=30 - day)
        write(
            daemon.store,
            ids=ids,
            x=x[s],
            y=y[s],
            answers={1: a[s], 2: b[s], 3: b[s]},
            received_at=at,
        )
        _labels_arrived(daemon, ids, at + timedelta(hours=1))
    # A label that arrived two days before the promotion on a request v3 answered as
    # champion: no such pair can exist, so whether it is read shows where the read starts.
    write(
        daemon.store,
        ids=[300],
        x=x[300:301],
        y=y[300:301],
        answers={3: a[300:301], 2: b[300:301]},
        roles=AS_CHAMPION,
    )
    _labels_arrived(daemon, range(300, 301), now - timedelta(days=2))

    daemon.store.promote(MODEL, 3, actor="t", reason="shadowed 31 days")
    promoted = daemon.store.champion(MODEL)
    assert promoted is not None and promoted.version == 3
    assert promoted.stage_changed_at > promoted.created_at + timedelta(days=30)
    s = slice(301, 501)
    write(
        daemon.store,
        ids=range(301, 501),
        x=x[s],
        y=y[s],
        answers={3: a[s], 2: b[s]},
        roles=AS_CHAMPION,
    )
    loop = runner(daemon)

    first = _paired(loop.run(MODEL), 2)
    assert (first.champion_version, first.fed) == (3, 200)  # the ones after the promotion
    test = ComparisonStore(daemon.store).get_test(first.test_id)
    challenger = daemon.store.get_version(MODEL, 2)
    assert pairable_since(promoted, challenger, test) == promoted.stage_changed_at - CLOCK_MARGIN

    s = slice(501, 551)
    write(
        daemon.store,
        ids=range(501, 551),
        x=x[s],
        y=y[s],
        answers={3: a[s], 2: b[s]},
        roles=AS_CHAMPION,
    )
    assert _paired(loop.run(MODEL), 2).fed == 50  # and the pairs labelled since


def test_a_restored_champion_reads_its_earlier_terms_pairs_and_new_ones_from_its_restoration(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v1's test against v2 began in v1's first term; v3 replaced v1 and was rolled back.
    The labels of v1's first-term requests that arrived after the test's last look, before
    the restoration (less the margin), are its pairs still. v4, registered while v3
    served, never shadowed v1 before: its test reads from the restoration."""
    now = datetime.now(UTC)
    x, y, (a, b) = _equal(trained, 300)
    _registered_at(daemon, 1, now - timedelta(days=40))
    _registered_at(daemon, 2, now - timedelta(days=40))
    term = now - timedelta(days=10)
    s = slice(0, 150)
    late = [i >= 100 for i in range(150)]  # not labelled yet at the first look
    write(
        daemon.store,
        ids=range(150),
        x=x[s],
        y=y[s],
        answers={1: a[s], 2: b[s]},
        received_at=term,
        labelled=[not v for v in late],
    )
    _labels_arrived(daemon, range(100), term + timedelta(hours=1))
    loop = runner(daemon)
    first = _paired(loop.run(MODEL), 2)
    assert first.fed == 100
    with daemon.store.engine.begin() as conn:  # begun in the first term
        conn.execute(
            update(comparison_tests)
            .where(comparison_tests.c.id == first.test_id)
            .values(created_at=term)
        )
    daemon.store.add_labels(MODEL, [LabelItem(f"r{i}", float(y[i])) for i in range(100, 150)])
    _labels_arrived(daemon, range(100, 150), now - timedelta(days=6))  # after the look

    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    daemon.store.promote(MODEL, 3, actor="t", reason="t")
    _stage_changed_at(daemon, [1, 3], now - timedelta(days=5))
    daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")  # v4
    _registered_at(daemon, 4, now - timedelta(days=3))
    restored, _ = daemon.store.rollback(MODEL, actor="t", reason="t")
    assert restored.version == 1 and restored.stage_changed_at > now
    s = slice(150, 200)
    write(daemon.store, ids=range(150, 200), x=x[s], y=y[s], answers={1: a[s], 2: b[s], 4: b[s]})

    results = loop.run(MODEL)
    resumed, new = _paired(results, 2), _paired(results, 4)
    assert resumed.test_id == first.test_id
    assert resumed.fed == 100  # the first term's late labels and the pairs since
    assert new.fed == 50
    test = ComparisonStore(daemon.store).get_test(new.test_id)
    since = pairable_since(restored, daemon.store.get_version(MODEL, 4), test)
    assert since == restored.stage_changed_at - CLOCK_MARGIN
