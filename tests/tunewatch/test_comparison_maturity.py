"""Labels whose delay depends on the outcome: a default is known within days, a repaid
loan only at maturity. Read in arrival order, an early look sees mostly positives and
judges the challenger on them; with ``label_maturity_s`` a look reads only requests old
enough for every label to be in, in the order they were received."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    _feed_worse,
    _promote_a_worse_version,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
    write,
)
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonConfig
from tunewatch.store import LabelItem

MATURITY_S = 30 * 86_400.0


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _log(d: Daemon, ids: range, y: np.ndarray, at: datetime, labelled: np.ndarray) -> None:
    """Champion v1 always answers 0.5; challenger v2 always 0.9: better on positives,
    far worse on negatives, worse over a balanced mix (log loss 1.20 against 0.69)."""
    n = len(ids)
    write(
        d.store,
        ids=ids,
        x=np.zeros((n, 8), dtype=np.float32),
        y=y,
        answers={1: np.full((n, 2), 0.5), 2: np.tile([0.1, 0.9], (n, 1))},
        received_at=at,
        labelled=labelled.tolist(),
    )


def _log_one(d: Daemon, ids: range, y: np.ndarray, at: datetime, labelled: np.ndarray) -> None:
    """v1 alone answers 0.9 (the champion before a promotion)."""
    write(
        d.store,
        ids=ids,
        x=np.zeros((len(ids), 8), dtype=np.float32),
        y=y,
        answers={1: np.tile([0.1, 0.9], (len(ids), 1))},
        received_at=at,
        labelled=labelled.tolist(),
    )


def _scenario(d: Daemon) -> datetime:
    """Requests from after both versions were registered (none can carry both outputs
    before); returns the time to look at them, 40 days after the first."""
    start = datetime.now(UTC)
    # 800 requests from 40 days ago, every label in, half of them positive
    y = np.arange(800) % 2
    _log(d, range(800), y, start, np.ones(800, dtype=bool))
    # 2,000 requests from the last hour: the 1,000 positives already labelled, the
    # negatives' labels still to come
    y = np.arange(2000) % 2
    now = start + timedelta(days=40)
    _log(d, range(800, 2800), y, now - timedelta(hours=1), y == 1)
    return now


def test_arrival_order_calls_a_worse_challenger_better(daemon: Daemon) -> None:
    now = _scenario(daemon)
    paired = next(r for r in runner(daemon, clock=lambda: now).run(MODEL) if r.kind == "paired")
    assert paired.look is not None and paired.look.n == 1800  # 1,400 of them positive
    assert paired.look.decision == "challenger_better"


def test_matured_requests_in_request_order_judge_it_on_the_whole_mix(daemon: Daemon) -> None:
    now = _scenario(daemon)
    loop = runner(daemon, clock=lambda: now, label_maturity_s=MATURITY_S)
    paired = next(r for r in loop.run(MODEL) if r.kind == "paired")
    assert paired.look is not None and paired.look.n == 800  # the matured requests only
    assert paired.look.decision == "challenger_worse"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1


def test_the_rollback_watch_waits_for_matured_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The watch used to be created at once, its baseline read from requests matured by
    then: none, when the previous champion served for less than the maturity, and the
    watch closed for good with nothing to compare."""
    t = _promote_a_worse_version(daemon, trained)  # v1's baseline is an hour old
    _feed_worse(daemon, t, 400, 1400)  # v2's requests: labelled, but not yet matured
    now = datetime.now(UTC)
    settings = {
        "label_maturity_s": 7200.0,
        "rollback": {"watch_s": 86_400.0, "paired": False, "min_n": 300},
    }
    early = runner(daemon, clock=lambda: now, **settings)
    assert [r for r in early.run(MODEL) if r.kind == "rollback_watch"] == []
    assert early.comparisons.list_tests(MODEL, kind="rollback_watch") == []
    later = runner(daemon, clock=lambda: now + timedelta(hours=3), **settings)
    [watch] = [r for r in later.run(MODEL) if r.kind == "rollback_watch"]
    assert watch.action == "rolled_back" and watch.look is not None
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["baseline_n"] == 400


def test_the_watch_baseline_is_the_newest_matured_requests_not_the_latest_labels(
    daemon: Daemon,
) -> None:
    """Among matured requests, those whose labels arrived last are the slow class: read
    newest label first, the baseline was all negatives."""
    now = datetime.now(UTC)
    for day in range(60, 0, -3):  # v1 (answering 0.9 always) served 20 requests every 3 days
        ids = range(day * 100, day * 100 + 20)
        y = np.arange(20) % 2
        _log_one(daemon, ids, y, now - timedelta(days=day), labelled=y == 1)
    for day in range(60, 0, -3):  # the negatives' labels arrive last
        daemon.store.add_labels(
            MODEL, [LabelItem(f"r{day * 100 + i}", 0.0) for i in range(0, 20, 2)]
        )
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="t", reason="v2")
    assert outcome.status == "promoted"
    settings = {
        "label_maturity_s": 30 * 86_400.0,
        "rollback": {
            "watch_s": 40 * 86_400.0,
            "baseline_requests": 100,
            "paired": False,
            "min_n": 100,
        },
    }
    loop = runner(daemon, clock=lambda: now + timedelta(days=31), **settings)
    loop.run(MODEL)
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    units, outcomes, total = test.state["stats"][0][:3]
    assert units == outcomes == 100
    assert 1.0 < total / outcomes < 1.4  # half positives (0.11), half negatives (2.30)


def test_a_mixing_sd_without_msprt_is_a_config_error() -> None:
    """The paired tests refused it at every run ("`mixing_sd` applies to method 'msprt'
    only"), so no challenger was ever compared."""
    with pytest.raises(ValueError, match="`mixing_sd` applies to `method: msprt` only"):
        ComparisonConfig.model_validate({"mixing_sd": 0.3})
    assert ComparisonConfig.model_validate({"mixing_sd": 0.3, "method": "msprt"}).mixing_sd == 0.3


def test_a_watch_shorter_than_the_maturity_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="must exceed `label_maturity_s`"):
        ComparisonConfig.model_validate(
            {"label_maturity_s": 86_400.0, "rollback": {"watch_s": 3600.0}}
        )
