"""A paired test reads from its watermark: the label arrival of the newest request it
consumed, less ``LATE_COMMIT_MARGIN`` for labels committed late. Read from its start each
tick, a test open 30 days at a million requests a day walked 30 million rows per
challenger every five minutes."""

from __future__ import annotations

from collections.abc import Iterator
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
from tunewatch.store import LabelItem
from tunewatch.store._comparison_rows import LATE_COMMIT_MARGIN, WATERMARKS
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._schema import labels, model_versions


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _label_arrived(d: Daemon, request_id: str, at: datetime) -> None:
    """``request_id``'s label as if stamped at ``at`` and committed only now."""
    with d.store.engine.begin() as conn:
        conn.execute(
            update(labels)
            .where(labels.c.model == MODEL, labels.c.request_id == request_id)
            .values(received_at=at)
        )


def test_a_paired_tests_next_look_reads_from_its_watermark_less_the_margin(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = traffic(trained, 400, seed=5)
    swap = np.random.default_rng(1).random(400) < 0.5  # two equal versions: no decision
    champion = np.where(swap[:, None], t.gbm, t.logistic)
    challenger = np.where(swap[:, None], t.logistic, t.gbm)
    loop = runner(daemon)

    def log(ids: range) -> None:
        s = slice(ids.start, ids.stop)
        write(daemon.store, ids=ids, x=t.x[s], y=t.y[s], answers={1: champion[s], 2: challenger[s]})

    log(range(300))
    [first] = loop.run(MODEL)
    assert first.fed == 300  # a test without a watermark reads from its start, once
    test = ComparisonStore(daemon.store).get_test(first.test_id)
    mark = test.state[WATERMARKS]["labelled"]
    watermark = datetime.fromisoformat(mark["at"])
    arrivals = [daemon.store.get_label(MODEL, f"r{i}") for i in range(300)]
    newest = max(label.received_at for label in arrivals if label is not None)
    assert mark["order"] == "label" and watermark == newest

    log(range(300, 352))
    # two labels committed late: stamped before the watermark, within the margin and past it
    _label_arrived(daemon, "r350", watermark - LATE_COMMIT_MARGIN / 2)
    _label_arrived(daemon, "r351", watermark - LATE_COMMIT_MARGIN - timedelta(minutes=1))
    [second] = loop.run(MODEL)
    assert second.fed == 51  # r300..r350: the late one within the margin too
    comparisons = ComparisonStore(daemon.store)
    seen = comparisons.read_labelled(
        model=MODEL, answered_by=1, paired_with=2, consumed_by=second.test_id
    )
    assert "r350" in seen.request_ids and "r351" not in seen.request_ids
    assert [look.n for look in comparisons.history(MODEL, 2)] == [300, 351]
    moved = comparisons.get_test(second.test_id).state[WATERMARKS]["labelled"]
    assert datetime.fromisoformat(moved["at"]) > watermark


def test_a_label_from_a_replica_whose_clock_runs_minutes_behind_is_still_compared(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Label arrival is stamped by the accepting replica's clock; with a 10-minute margin, a
    replica 15 minutes behind lost every label it accepted once another's were consumed.
    The margin is the comparison's clock margin (an hour)."""
    t = traffic(trained, 320, seed=6)
    loop = runner(daemon)
    write(
        daemon.store,
        ids=range(300),
        x=t.x[:300],
        y=t.y[:300],
        answers={1: t.logistic[:300], 2: t.logistic[:300]},
    )
    [first] = loop.run(MODEL)
    mark = ComparisonStore(daemon.store).get_test(first.test_id).state[WATERMARKS]["labelled"]
    watermark = datetime.fromisoformat(mark["at"])
    s = slice(300, 320)
    write(
        daemon.store,
        ids=range(300, 320),
        x=t.x[s],
        y=t.y[s],
        answers={1: t.logistic[s], 2: t.logistic[s]},
    )
    for i in range(300, 320):  # accepted by a replica 15 minutes behind
        _label_arrived(daemon, f"r{i}", watermark - timedelta(minutes=15))
    [second] = loop.run(MODEL)
    assert second.fed == 20


def test_with_label_maturity_a_request_labelled_after_newer_ones_were_consumed_is_compared(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """With ``label_maturity_s`` reads go by request receipt, and a matured request's label
    may arrive at any time after: read from a receipt watermark, an older request whose
    label came after newer ones were consumed (a repayment posted after maturity, the
    defaults first) was never compared, a skewed sample. Such reads start at the test's
    start."""
    t = traffic(trained, 300, seed=8)
    loop = runner(daemon, label_maturity_s=60.0)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    with daemon.store.engine.begin() as conn:  # both versions served long before
        conn.execute(
            update(model_versions)
            .where(model_versions.c.model == MODEL)
            .values(
                created_at=day_ago - timedelta(days=2), stage_changed_at=day_ago - timedelta(days=2)
            )
        )
    older, newer = slice(0, 100), slice(100, 300)
    write(  # received two hours before the others; their labels come after the first look
        daemon.store,
        ids=range(100),
        x=t.x[older],
        y=t.y[older],
        answers={1: t.logistic[older], 2: t.logistic[older]},
        labelled=[False] * 100,
        received_at=day_ago - timedelta(hours=2),
    )
    write(
        daemon.store,
        ids=range(100, 300),
        x=t.x[newer],
        y=t.y[newer],
        answers={1: t.logistic[newer], 2: t.logistic[newer]},
        received_at=day_ago,
    )
    [first] = loop.run(MODEL)
    assert first.fed == 200
    daemon.store.add_labels(MODEL, [LabelItem(f"r{i}", float(t.y[i])) for i in range(100)])
    [second] = loop.run(MODEL)
    assert second.fed == 100
