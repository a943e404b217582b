"""A rollback watch with ``watch_s`` whose time is up reads once more before it passes:
the requests received within the watch, with the labels known by then. It passed
unread when the first run after its end came, and a worse champion whose labels had
all arrived within the watch (1,000 requests, about 0.6 nats each worse) stayed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    Traffic,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    write,
)
from tests.tunewatch.test_comparison_watch import _promote_v2, _watch
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner

WATCH_S = 40.0


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _feed_at(d: Daemon, t: Traffic, start: int, stop: int, v2: np.ndarray, at: datetime) -> None:
    """Requests received at ``at``, answered by v2 (the champion) and scored by v1 in
    shadow, labelled."""
    s = slice(start, stop)
    write(
        d.store,
        ids=range(start, stop),
        x=t.x[s],
        y=t.y[s],
        answers={2: v2[s], 1: t.logistic[s]},
        roles={2: "champion", 1: "challenger"},
        received_at=at,
    )


def _timed_watch(
    d: Daemon, trained: list[ExampleModel]
) -> tuple[Traffic, datetime, list[datetime]]:
    """v2 promoted; a watch of ``WATCH_S`` seconds started by a run a second later
    (v1 in shadow). The runs' clock is the list's one item."""
    t = _promote_v2(d, trained)
    [promotion] = d.store.list_events(model=MODEL, type="promoted", limit=1)
    return t, promotion.created_at, [promotion.created_at + timedelta(seconds=1)]


def _loop(d: Daemon, now: list[datetime]) -> ComparisonRunner:
    return runner(d, clock=lambda: now[0], rollback={"watch_s": WATCH_S})


def test_labels_that_arrived_within_the_watch_are_read_when_its_time_is_up(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t, promoted_at, now = _timed_watch(daemon, trained)
    loop = _loop(daemon, now)
    first = _watch(loop)
    assert first is not None and first.action == "none"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    worse = oracle(t.x)[:, ::-1].copy()
    _feed_at(daemon, t, 400, 1400, worse, promoted_at + timedelta(seconds=10))
    now[0] = promoted_at + timedelta(seconds=WATCH_S + 20)  # the first run after the watch
    watch = _watch(loop)
    assert watch is not None and watch.action == "rolled_back", watch
    assert watch.look is not None and watch.look.decision == "challenger_worse"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == "rolled_back"


def test_a_watch_whose_time_is_up_passes_on_equal_losses_and_ignores_later_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2 answers as v1 within the watch, and far worse after it: the last look reads
    the watch's requests only, decides nothing, and the watch passes."""
    t, promoted_at, now = _timed_watch(daemon, trained)
    loop = _loop(daemon, now)
    _watch(loop)
    _feed_at(daemon, t, 400, 1400, t.logistic, promoted_at + timedelta(seconds=10))
    worse = oracle(t.x)[:, ::-1].copy()
    _feed_at(daemon, t, 1400, 2400, worse, promoted_at + timedelta(seconds=WATCH_S + 1))
    now[0] = promoted_at + timedelta(seconds=WATCH_S + 20)
    watch = _watch(loop)
    assert watch is not None and watch.action == "watch_passed", watch
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.status == "closed" and test.outcome == {"action": "watch_passed", "n": 1000}
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    assert daemon.store.get_version(MODEL, 1).stage == "retired"  # out of shadow again
    assert _watch(loop) is None  # passed once


def test_the_last_look_reads_the_watch_s_requests_a_batch_a_run_until_none_is_left(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """More requests of the watch wait than a run feeds (``max_batch``): it stays open
    until a read is short, then passes on all of them."""
    t, promoted_at, now = _timed_watch(daemon, trained)
    loop = runner(daemon, clock=lambda: now[0], max_batch=400, rollback={"watch_s": WATCH_S})
    _watch(loop)
    _feed_at(daemon, t, 400, 1400, t.logistic, promoted_at + timedelta(seconds=10))
    now[0] = promoted_at + timedelta(seconds=WATCH_S + 20)
    actions = [(w.action, w.fed) for w in (_watch(loop), _watch(loop), _watch(loop)) if w]
    assert actions == [("none", 400), ("none", 400), ("watch_passed", 200)]
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.outcome == {"action": "watch_passed", "n": 1000}
