"""`tunewatch_objective_realised` is the realised objective of the newest matured decay
window, and no other: when that window has no matured label, the series is removed, by
the run and by a new leader's takeover export alike.

It exported the newest window that had a value: labels that stopped after day 10 of 31
days of traffic left day 9's accuracy on the gauge, 21 days old, nothing telling its age
(docs/http-api.md: a realised objective with no matured window is removed, not held).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import champion_answered, next_midnight
from tests.tunewatch.test_evaluation import _champion_daemon
from tests.tunewatch.test_evaluation_exports import _taken_over
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import LabelItem

MODEL = "credit"
DAYS = 31  # of traffic; the run is at the end of the last one
LABELLED_DAYS = 10  # the label feed stops after these
PER_DAY = 100
DAY = timedelta(days=1)
REALISED = "tunewatch_objective_realised"


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """Daily decay windows, a day's maturity, a 30-window horizon; drift and the
    estimate (which read the current window) off."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": PER_DAY,
            "drift": {"enabled": False},
            "estimate": {"enabled": False},
            "decay": {"window_s": 86_400, "maturity_s": 86_400, "horizon_windows": 30},
        },
        model={"objective": {"name": "accuracy"}},
    )
    yield d
    d.close()


def _traffic(
    d: Daemon, t0: datetime, n_days: int = DAYS
) -> dict[int, list[tuple[str, float, float]]]:
    """``n_days`` days of ``PER_DAY`` requests from ``t0`` on, the champion right with
    probability 0.9: per day, each request's id, predicted class and true label."""
    rng = np.random.default_rng(0)
    champion = d.store.champion(MODEL)
    assert champion is not None
    requests, outputs = [], []
    days: dict[int, list[tuple[str, float, float]]] = {}
    for day in range(n_days):
        for j in range(PER_DAY):
            at = t0 + day * DAY + timedelta(seconds=float(rng.uniform(0, 86_400)))
            rid, p1 = f"d{day}-{j}", np.float32(rng.uniform())
            predicted = float(p1 >= 0.5)
            label = predicted if rng.random() < 0.9 else 1.0 - predicted
            days.setdefault(day, []).append((rid, predicted, label))
            request, output = champion_answered(
                rid, at, np.zeros((1, 8)), np.array([[1 - p1, p1]]), version=champion.version
            )
            requests.append(request)
            outputs.append(output)
    d.store.write_records(requests, outputs)
    return days


def _label(d: Daemon, days: dict[int, list[tuple[str, float, float]]], which: range) -> None:
    # labels are stamped as they are added, before t0: every one has matured in time
    d.store.add_labels(
        MODEL,
        [LabelItem(request_id=rid, value=label) for day in which for rid, _, label in days[day]],
    )


def _realised(metrics: ServingMetrics) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for m in metrics.objective_realised.collect() for s in m.samples]


def test_the_realised_objective_is_removed_when_the_newest_matured_window_has_no_label(
    daemon: Daemon,
) -> None:
    t0 = next_midnight()  # the days are the windows
    days = _traffic(daemon, t0)
    _label(daemon, days, range(LABELLED_DAYS))
    daemon.evaluator.clock = lambda: t0 + DAYS * DAY
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}

    windows = rows["decay"].payload["windows"]
    assert windows[-1]["n"] == 0 and windows[-1]["value"] is None  # day 29: no label
    assert [w["value"] is not None for w in windows].count(True) == LABELLED_DAYS - 1
    assert _realised(daemon.metrics) == []  # it held day 9's accuracy
    # what says the labels stopped: coverage and delay, not a held objective
    labels = rows["labels"]
    assert labels.payload["coverage"] == 0.0 and labels.payload["alarm"] is True
    # a new leader exports the stored verdict as the run did: nothing
    assert _realised(_taken_over(daemon)) == []


def test_the_realised_objective_comes_back_with_the_newest_window_once_labels_resume(
    daemon: Daemon,
) -> None:
    t0 = next_midnight()  # the days are the windows
    days = _traffic(daemon, t0, DAYS + 2)
    _label(daemon, days, range(LABELLED_DAYS))
    daemon.evaluator.clock = lambda: t0 + DAYS * DAY
    daemon.evaluator.evaluate(MODEL)
    assert _realised(daemon.metrics) == []

    # the feed resumes: the labels of the days since arrive (stamped before the
    # requests, in time for every window); those of windows long settled count for none
    _label(daemon, days, range(LABELLED_DAYS, DAYS + 2))
    daemon.evaluator.clock = lambda: t0 + (DAYS + 2) * DAY
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    # the newest matured window is day 31's requests (day 32's matures a day after it ends)
    newest = days[DAYS]
    accuracy = float(np.mean([predicted == label for _, predicted, label in newest]))
    assert rows["decay"].payload["windows"][-1]["value"] == pytest.approx(accuracy)
    series = {"model": MODEL, "version": "1", "objective": "accuracy"}
    assert _realised(daemon.metrics) == [(series, pytest.approx(accuracy))]
    assert _realised(_taken_over(daemon)) == [(series, pytest.approx(accuracy))]
