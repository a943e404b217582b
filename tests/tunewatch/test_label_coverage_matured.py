"""`tunewatch_label_coverage` is the share of requests at least `decay.maturity_s` old
that have a label: the requests whose labels are due.

It divided by every request of the newest window, most of them younger than the
maturity on a busy model: 20,000 requests over two days, every one older than 12 h
labelled, read 0.0002, as if the label feed were dead. The raw share of the newest
window labelled so far is kept beside it as `labelled_so_far`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.conftest import champion_answered
from tests.tunewatch.test_evaluation import _champion_daemon
from tests.tunewatch.test_evaluation_exports import _taken_over
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import EvaluationRow, LabelItem

MODEL = "credit"
WINDOW = 300  # rows of the newest window, and of the matured one
MATURITY = timedelta(days=1)
COVERAGE = "tunewatch_label_coverage"


@pytest.fixture
def now() -> datetime:
    """The run: a minute ahead of the real clock, so that labels, stamped as they are
    added, came before it."""
    return datetime.now(UTC) + timedelta(minutes=1)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, now: datetime) -> Iterator[Daemon]:
    """A day's maturity; drift and the estimate off."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": WINDOW,
            "drift": {"enabled": False},
            "estimate": {"enabled": False},
            "decay": {
                "window_s": 3600,
                "maturity_s": MATURITY.total_seconds(),
                "horizon_windows": 48,
            },
        },
    )
    d.evaluator.clock = lambda: now
    yield d
    d.close()


def _requests(d: Daemon, prefix: str, newest: datetime, n: int) -> list[str]:
    """``n`` requests a minute apart, the last at ``newest``; their ids, oldest first."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    rng = np.random.default_rng(len(prefix) + n)
    ids, requests, outputs = [], [], []
    for i in range(n):
        p1 = np.float32(rng.uniform())
        rid = f"{prefix}{i}"
        request, output = champion_answered(
            rid,
            newest - timedelta(minutes=n - 1 - i),
            np.zeros((1, 8)),
            np.array([[1 - p1, p1]]),
            version=champion.version,
        )
        ids.append(rid)
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)
    return ids


def _label(d: Daemon, ids: list[str]) -> None:
    d.store.add_labels(MODEL, [LabelItem(request_id=rid, value=1.0) for rid in ids])


def _labels_row(d: Daemon) -> EvaluationRow:
    return {r.kind: r for r in d.evaluator.evaluate(MODEL)}["labels"]


def _gauge(d: Daemon) -> float | None:
    return d.metrics.registry.get_sample_value(COVERAGE, {"model": MODEL})


def test_a_healthy_label_feed_reads_full_coverage_beside_fresh_unlabelled_requests(
    daemon: Daemon, now: datetime
) -> None:
    """Every request older than the maturity is labelled; the newest window's requests,
    hours old, have no label yet, none due."""
    matured = _requests(daemon, "old", now - MATURITY - timedelta(hours=1), WINDOW)
    _requests(daemon, "new", now - timedelta(minutes=5), WINDOW)  # under 6 h old
    _label(daemon, matured)
    row = _labels_row(daemon)
    assert row.payload["coverage"] == 1.0
    assert _gauge(daemon) == 1.0
    # the newest window's own figures are kept, under names that say what they read
    assert row.payload["labelled_so_far"] == 0.0
    assert row.payload["unlabelled_share"] == 1.0
    assert row.payload["n"] == WINDOW and row.payload["n_labelled"] == 0
    assert row.payload["n_matured"] == WINDOW
    # a new leader exports the stored figure
    assert _taken_over(daemon).registry.get_sample_value(COVERAGE, {"model": MODEL}) == 1.0


def test_a_dead_label_feed_still_reads_low_coverage(daemon: Daemon, now: datetime) -> None:
    """A tenth of the requests older than the maturity labelled, none since."""
    matured = _requests(daemon, "old", now - MATURITY - timedelta(hours=1), WINDOW)
    _requests(daemon, "new", now - timedelta(minutes=5), WINDOW)
    _label(daemon, matured[: WINDOW // 10])
    row = _labels_row(daemon)
    assert row.payload["coverage"] == pytest.approx(0.1)
    assert _gauge(daemon) == pytest.approx(0.1)
    assert row.payload["n_matured"] == WINDOW


def test_labels_of_young_requests_do_not_lift_the_coverage_of_matured_ones(
    daemon: Daemon, now: datetime
) -> None:
    """The fresh requests are labelled within minutes; the matured ones never were."""
    _requests(daemon, "old", now - MATURITY - timedelta(hours=1), WINDOW)
    fresh = _requests(daemon, "new", now - timedelta(minutes=5), WINDOW)
    _label(daemon, fresh)
    row = _labels_row(daemon)
    assert row.payload["coverage"] == 0.0 and _gauge(daemon) == 0.0
    assert row.payload["labelled_so_far"] == 1.0


def test_without_a_matured_request_coverage_has_no_figure(daemon: Daemon, now: datetime) -> None:
    """Every request is younger than the maturity and labelled already: none of their
    labels was due, and the coverage is unmeasured, neither 0 nor 1."""
    _label(daemon, _requests(daemon, "new", now - timedelta(minutes=5), WINDOW))
    row = _labels_row(daemon)
    assert row.payload["coverage"] is None and row.payload["n_matured"] == 0
    assert row.payload["labelled_so_far"] == 1.0
    assert _gauge(daemon) is None
    assert _taken_over(daemon).registry.get_sample_value(COVERAGE, {"model": MODEL}) is None


def test_the_coverage_gauge_is_removed_once_no_request_of_the_matured_window_is_left(
    trained: list[ExampleModel], tmp_path: Path, now: datetime
) -> None:
    """An hour's window: the requests a day and an hour before the run have all left
    the matured window; the figure they gave is not held."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": None,
            "window_s": 3600,
            "drift": {"enabled": False},
            "estimate": {"enabled": False},
            "decay": {
                "window_s": 3600,
                "maturity_s": MATURITY.total_seconds(),
                "horizon_windows": 48,
            },
        },
    )
    try:
        first = now + timedelta(hours=1)  # after the labels came
        _label(d, _requests(d, "old", first - MATURITY - timedelta(minutes=10), 30))
        _requests(d, "mid", first - timedelta(minutes=10), 30)  # the newest window
        d.evaluator.clock = lambda: first
        assert _labels_row(d).payload["coverage"] == 1.0 and _gauge(d) == 1.0
        second = first + timedelta(hours=3)
        _requests(d, "new", second - timedelta(minutes=10), 30)
        d.evaluator.clock = lambda: second
        row = _labels_row(d)
        assert row.payload["n"] == 30 and row.payload["n_matured"] == 0
        assert row.payload["coverage"] is None and _gauge(d) is None
    finally:
        d.close()
